"""Reading a WARC folder back (resume, `webtext extract --warc`), trusting nothing in it.

A record is decompressed under a size bound (the fetch cap plus room for headers: a gzip bomb or a giant header
stops there; a reader that skips a too-large record to find the next one inflates at most SKIP_FACTOR times the
bound, then gives up on the rest of that file), and is kept only when it is exactly what it claims: its gzip
member holds one record whose block is exactly Content-Length bytes (a decimal number) followed by the record's
closing CRLF CRLF, its WARC-Block-Digest and WARC-Payload-Digest (where present) match (warcio's checker), and
its HTTP Content-Length (where present) is the payload's length; anything else is `warc_bad_record`. An
outcomes line is read with a bounded readline, must parse, and must name a `fetch-*.warc.gz` in
the same folder at a sane offset. Whatever fails becomes a Drop counted at the extract stage (`webtext extract
--warc` starts there) under `warc_bad_outcome`, `warc_unreadable`, `warc_too_large` or `warc_bad_record`; on
resume (crawl/fetch/transform.py) a bad line is skipped and a bad record fetched again. The writer is warc.py.
"""
from __future__ import annotations

import io
import json
import re
import zlib
from datetime import timezone
from typing import Iterable, Iterator, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.timeutils import iso_date_to_datetime

from core.records import DROPPED, EXTRACT, Link, Page, Step
from crawl.fetch.content import detect_encoding, media_type

RAW = CompressionTypes.UNCOMPRESSED     # .gz members are written by warcio; the filesystem must not add more
LINK_HEADER = "WebText-Link"
MAX_BYTES = 20 * 2**20                  # = FetchConfig.max_decompressed_bytes: no stored body is larger
HEADER_ROOM = 256 * 1024                # WARC + HTTP headers of one record, beyond its body
MAX_LINE = 64 * 1024                    # one outcomes line (a Link with many subreddits is a few KiB)
SKIP_FACTOR = 4                         # a too-large member is inflated to at most this many times the bound
WARC_NAME = re.compile(r"fetch-[A-Za-z0-9_-]{1,64}\.warc\.gz")


class Captured(NamedTuple):
    """One decided link from an outcomes file."""
    url: str
    outcome: str
    detail: str
    warc: Optional[str]      # file name (in warc_dir) of the response record, for ok
    offset: Optional[int]
    link: Link


class Unreadable(ValueError):
    """A record or line that cannot be used; `reason` is its drop reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _join(warc_dir: str, name: str) -> str:
    return FileSystems.join(warc_dir, name)


def link_to_json(link: Link) -> str:
    return json.dumps(link._asdict(), sort_keys=True)


def link_from_json(text: str) -> Link:
    d = json.loads(text)
    return _link_from_dict(d)


def _link_from_dict(d: dict) -> Link:
    subs = d["subreddits"]
    if not isinstance(d["url"], str) or not isinstance(d["host"], str) or not isinstance(subs, list):
        raise ValueError("link fields of the wrong type")
    return Link(d["url"], d["host"], int(d["karma"]), tuple(str(s) for s in subs), int(d["created_utc"]),
                int(d.get("submissions", 1)))


def read_member(f, offset: int, limit: int, find_end: bool = False) -> Tuple[Optional[bytes], int]:
    """(decompressed bytes, offset of the next member) of the gzip member at `offset`, holding at most `limit`
    bytes: a bomb or a giant record raises Unreadable("warc_too_large"), or with find_end is decompressed to
    its end without keeping it (bytes None) so a sequential reader can go on. (b"", offset) at end of file."""
    f.seek(offset)
    d, parts, kept, fed, over = zlib.decompressobj(31), [], 0, 0, False
    inflated, give_up = 0, SKIP_FACTOR * limit
    while not d.eof:
        chunk = f.read(1 << 16)
        if not chunk:
            if fed == 0:
                return b"", offset
            raise Unreadable("warc_unreadable", f"truncated record at {offset}")
        fed += len(chunk)
        buf = chunk
        try:
            while buf and not d.eof:
                data = d.decompress(buf, 1 << 20)
                buf = d.unconsumed_tail
                inflated += len(data)
                if inflated > give_up:   # a member that (nearly) never ends: the rest of the file is lost
                    raise Unreadable("warc_too_large", f"record at {offset} inflates past {give_up} bytes; "
                                                       "the rest of the file is skipped")
                if not over:
                    kept += len(data)
                    if kept > limit:
                        if not find_end:
                            raise Unreadable("warc_too_large", f"record at {offset} over {limit} bytes")
                        over, parts = True, []
                    else:
                        parts.append(data)
        except zlib.error as e:
            raise Unreadable("warc_unreadable", f"damaged record at {offset}: {e}") from None
    return (None if over else b"".join(parts)), offset + fed - len(d.unused_data)


def _payload(record, max_bytes: int) -> bytes:
    """The whole payload, read through warcio's digest checker (which raises on a mismatch at its end)."""
    parts, size = [], 0
    try:
        while True:
            data = record.raw_stream.read(1 << 16)
            if not data:
                break
            size += len(data)
            if size > max_bytes:
                raise Unreadable("warc_too_large", f"body over {max_bytes} bytes")
            parts.append(data)
    except ArchiveLoadFailed as e:
        raise Unreadable("warc_bad_record", f"{e}") from None
    body = b"".join(parts)
    if record.digest_checker.problems:
        raise Unreadable("warc_bad_record", "; ".join(record.digest_checker.problems))
    declared = record.http_headers.get_header("Content-Length")
    if declared is not None and declared.strip() != str(len(body)):
        raise Unreadable("warc_bad_record", f"payload is {len(body)} bytes, its HTTP Content-Length says "
                                            f"{declared[:40]!r}")
    return body


def _page_from_record(record, link: Optional[Link], max_bytes: int) -> Page:
    if record.http_headers is None:
        raise Unreadable("warc_bad_record", "a response record without HTTP headers")
    ctype = record.http_headers.get_header("Content-Type") or ""
    body = _payload(record, max_bytes)
    try:
        if link is None:
            link = link_from_json(record.rec_headers.get_header(LINK_HEADER))
        when = iso_date_to_datetime(record.rec_headers.get_header("WARC-Date")).replace(tzinfo=timezone.utc)
        return Page(link, record.rec_headers.get_header("WARC-Target-URI"), int(record.http_headers.get_statuscode()),
                    media_type(ctype) or "text/html", body, detect_encoding(ctype, body), when.timestamp())
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise Unreadable("warc_bad_record", f"{type(e).__name__}: {e}") from None


def _parse_record(raw: bytes):
    """The one record of a decompressed gzip member, its block exactly as long as it says (the payload's digests
    are checked as it is read: _payload)."""
    try:
        record = next(iter(ArchiveIterator(io.BytesIO(raw), check_digests="raise")))
    except Exception as e:   # warcio raises many kinds on garbage
        raise Unreadable("warc_unreadable", f"not a WARC record ({type(e).__name__})") from None
    declared = record.rec_headers.get_header("Content-Length") or ""
    if not (declared.isascii() and declared.isdigit()):
        raise Unreadable("warc_bad_record", f"Content-Length {declared[:40]!r} is not a length")
    block = raw.find(b"\r\n\r\n") + 4          # the WARC header block ends at the first empty line
    actual = len(raw) - block - 4                  # the block, less the closing CRLF CRLF
    if actual != int(declared) or not raw.endswith(b"\r\n\r\n"):
        raise Unreadable("warc_bad_record", f"Content-Length says {declared} bytes, the record holds {actual} "
                                            "(or does not end with CRLF CRLF)")
    return record


def outcome_files(warc_dir: str) -> list:
    """Committed outcomes files, sorted (temp names start with '.' and do not match)."""
    try:
        found = FileSystems.match([_join(warc_dir, "outcomes-*.jsonl")])[0].metadata_list
    except Exception:       # no directory yet
        return []
    return sorted(m.path for m in found)


def parse_outcome(line: str) -> Captured:
    """One outcomes line, checked: Unreadable("warc_bad_outcome") for a torn or forged line."""
    try:
        d = json.loads(line)
        rec = Captured(d["url"], d["outcome"], d.get("detail") or "", d.get("warc"), d.get("offset"),
                       _link_from_dict(d["link"]))
        if not isinstance(rec.url, str) or not isinstance(rec.outcome, str) or not isinstance(rec.detail, str):
            raise ValueError("fields of the wrong type")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Unreadable("warc_bad_outcome", f"unparseable outcomes line ({type(e).__name__})") from None
    if rec.outcome == "ok":
        if not isinstance(rec.warc, str) or not WARC_NAME.fullmatch(rec.warc):
            raise Unreadable("warc_bad_outcome", f"names no WARC file of this folder: {str(rec.warc)[:100]!r}")
        if not isinstance(rec.offset, int) or isinstance(rec.offset, bool) or rec.offset < 0:
            raise Unreadable("warc_bad_outcome", f"bad offset {str(rec.offset)[:40]!r}")
    return rec


def parse_outcomes(lines: Iterable) -> Iterator[Captured]:
    """The good lines only (bytes or str): a torn or forged line is skipped, so resume fetches that link again."""
    for line in lines:
        try:
            line = line.decode("utf-8") if isinstance(line, bytes) else line
            if line.strip():
                yield parse_outcome(line)
        except (Unreadable, UnicodeDecodeError):
            continue


def outcome_lines(f) -> Iterator[Tuple[int, bytes]]:
    """(line number, line) with each line bounded: a longer one comes back cut (and then fails to parse)."""
    n = 0
    while True:
        line = f.readline(MAX_LINE)
        if not line:
            return
        n += 1
        if not line.endswith(b"\n") and len(line) == MAX_LINE:
            while True:                    # skip the rest of an overlong line, bounded memory
                rest = f.readline(MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
        yield n, line


def preference(rec: Captured):
    """Sort key choosing one record when a URL was decided more than once (a retried failure, overlapping runs):
    an ok capture first, then the smallest record, so every reader and runner picks the same one."""
    return rec.outcome != "ok", rec.outcome, rec.warc or "", rec.offset or 0


def load_page(warc_dir: str, rec: Captured, link: Optional[Link] = None, max_bytes: int = MAX_BYTES) -> Page:
    """The Page of an ok outcome, from its WARC record (with `link`, or the Link stored in the record); reads at
    most max_bytes of body; Unreadable (a ValueError) names why a record cannot be used."""
    if not isinstance(rec.warc, str) or not WARC_NAME.fullmatch(rec.warc):
        raise Unreadable("warc_bad_outcome", f"names no WARC file of this folder: {str(rec.warc)[:100]!r}")
    try:
        with FileSystems.open(_join(warc_dir, rec.warc), compression_type=RAW) as f:
            raw, _ = read_member(f, rec.offset, max_bytes + HEADER_ROOM)
    except IOError as e:
        raise Unreadable("warc_unreadable", f"{rec.warc}: {type(e).__name__}") from None
    record = _parse_record(raw)
    if record.rec_type != "response":
        raise Unreadable("warc_unreadable", f"{rec.warc}@{rec.offset} is a {record.rec_type} record")
    return _page_from_record(record, link or rec.link, max_bytes)


def response_pages(warc_path: str, max_bytes: int = MAX_BYTES) -> Iterator:
    """Page, or Unreadable, for every response record with a WebText-Link header, in file order; a damaged
    gzip stream ends the file (nothing after it can be found again)."""
    with FileSystems.open(warc_path, compression_type=RAW) as f:
        offset = 0
        while True:
            try:
                raw, nxt = read_member(f, offset, max_bytes + HEADER_ROOM, find_end=True)
            except Unreadable as e:
                yield e
                return
            if raw == b"":
                return
            at, offset = offset, nxt
            if raw is None:
                yield Unreadable("warc_too_large", f"{warc_path}@{at}: record over {max_bytes} bytes")
                continue
            try:
                record = _parse_record(raw)
                if record.rec_type == "response" and record.rec_headers.get_header(LINK_HEADER):
                    yield _page_from_record(record, None, max_bytes)
            except Unreadable as e:
                yield Unreadable(e.reason, f"{warc_path}@{at}: {e}")


# ---------------------------------------------------------------------------------------------- Beam
class _ReadStep(Step):
    """Counted at the extract stage: each thing that cannot become a Page is an input dropped there (the Pages
    themselves are counted by ExtractDocuments), so `extract --warc` balances in == out + dropped."""
    stage = EXTRACT

    def bad(self, e: Unreadable, url: str = ""):
        self.count("in")
        return self.emit(self.drop(e.reason, url, str(e)))


class _OkOutcomes(_ReadStep):
    def process(self, readable_file):
        name = readable_file.metadata.path
        with readable_file.open(compression_type=RAW) as f:
            for n, line in outcome_lines(f):
                try:
                    rec = parse_outcome(line.decode("utf-8"))
                except (Unreadable, UnicodeDecodeError) as e:
                    e = e if isinstance(e, Unreadable) else Unreadable("warc_bad_outcome", "not UTF-8")
                    yield from self.bad(Unreadable(e.reason, f"{name}:{n}: {e}"))
                    continue
                if rec.outcome == "ok":
                    yield rec.url, rec


class _LoadPages(_ReadStep):
    """One Page per URL: the preferred capture, or the next one when it cannot be read."""

    def __init__(self, warc_dir: str, max_bytes: int):
        super().__init__()
        self.warc_dir, self.max_bytes = warc_dir, max_bytes

    def process(self, kv):
        url, recs = kv
        first = None
        for rec in sorted(recs, key=preference):
            try:
                yield load_page(self.warc_dir, rec, max_bytes=self.max_bytes)
                return
            except Unreadable as e:
                first = first or Unreadable(e.reason, f"{rec.warc}@{rec.offset}: {e}")
        yield from self.bad(first, url)


class _WarcResponses(_ReadStep):
    def __init__(self, max_bytes: int):
        super().__init__()
        self.max_bytes = max_bytes

    def process(self, path: str):
        try:
            for item in response_pages(path, self.max_bytes):
                if isinstance(item, Unreadable):
                    yield from self.bad(item)
                else:
                    yield item.link.url, item
        except IOError as e:
            yield from self.bad(Unreadable("warc_unreadable", f"{path}: {type(e).__name__}"))


class ReadWarcPages(beam.PTransform):
    """PBegin -> {"pages": Page, "dropped": Drop}: the ok outcomes of `warc_dir` (or, with no outcome logs,
    every response record with a WebText-Link header), read in parallel, one Page per URL, so extraction can
    be rerun with no network (`webtext extract --warc DIR`). Recover a killed capture's leftovers first
    (crawl.fetch.warc_recover.recover_leftovers; pipeline/build.py does)."""

    def __init__(self, warc_dir: str, max_bytes: int = MAX_BYTES):
        super().__init__()
        self.warc_dir, self.max_bytes = warc_dir, max_bytes

    def expand(self, pbegin):
        warc_dir = self.warc_dir
        if outcome_files(warc_dir):
            ok = (pbegin
                  | "MatchOutcomes" >> fileio.MatchFiles(_join(warc_dir, "outcomes-*.jsonl"))
                  | "ReadOutcomes" >> fileio.ReadMatches()
                  | "OkOutcomes" >> beam.ParDo(_OkOutcomes()).with_outputs(DROPPED, main="ok"))
            pages = (ok.ok
                     | "ByURL" >> beam.GroupByKey()
                     | "LoadPages" >> beam.ParDo(_LoadPages(warc_dir, self.max_bytes)).with_outputs(DROPPED, main="pages"))
            dropped = (ok[DROPPED], pages[DROPPED]) | "ReadDrops" >> beam.Flatten()
            return {"pages": pages.pages, DROPPED: dropped}
        # No outcome logs (WARCs from elsewhere, or copied alone): every response record with a WebText-Link.
        read = (pbegin
                | "MatchWarcs" >> fileio.MatchFiles(_join(warc_dir, "fetch-*.warc.gz"))
                | "Paths" >> beam.Map(lambda m: m.path)
                | "Responses" >> beam.ParDo(_WarcResponses(self.max_bytes)).with_outputs(DROPPED, main="pages"))
        pages = (read.pages
                 | "OnePagePerURL" >> beam.CombinePerKey(lambda pages: min(pages, key=lambda p: (p.fetched_at, p.final_url)))
                 | "Pages" >> beam.Values())
        return {"pages": pages, DROPPED: read[DROPPED]}
