"""WARC capture of fetched pages, an outcome log for every link, and reading both back (resume, offline extract).

Layout of `warc_dir` (local path or any Beam filesystem, e.g. gs://):
    fetch-<id>.warc.gz      response + request records of ok pages (one gzip member per record, warcio)
    outcomes-<id>.jsonl     one line per link decided by the same writer: url, outcome, detail, warc file and
                            offset of the response record (ok only), and the Link (provenance)
Both are written under hidden temp names and renamed when complete, the WARC first and its outcomes file last, so
an outcomes file is the commit marker: a killed run leaves temp files (ignored) but never a torn file that counts.
A response record also carries the Link as a `WebText-Link` JSON header, so a WARC alone still rebuilds Pages.
Response payloads are stored decoded (as the fetcher kept them); the original Content-Encoding and
Transfer-Encoding are kept as X-Crawler-* headers and Content-Length is the stored length.
"""
from __future__ import annotations

import io
import json
import threading
import uuid
from datetime import datetime, timezone
from typing import Iterable, Iterator, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date, iso_date_to_datetime
from warcio.warcwriter import WARCWriter

from crawl.fetch.content import detect_encoding, media_type
from core.records import Link, Page

RAW = CompressionTypes.UNCOMPRESSED     # .gz members are written by warcio; the filesystem must not add more
LINK_HEADER = "WebText-Link"


class Captured(NamedTuple):
    """One decided link from an outcomes file."""
    url: str
    outcome: str
    detail: str
    warc: Optional[str]      # file name (in warc_dir) of the response record, for ok
    offset: Optional[int]
    link: Link


def _join(warc_dir: str, name: str) -> str:
    return FileSystems.join(warc_dir, name)


def link_to_json(link: Link) -> str:
    return json.dumps(link._asdict(), sort_keys=True)


def link_from_json(text: str) -> Link:
    d = json.loads(text)
    return Link(d["url"], d["host"], int(d["karma"]), tuple(d["subreddits"]), int(d["created_utc"]),
                int(d.get("submissions", 1)))


class WarcSink:
    """Thread-safe writer for one worker: `add(link, result)` per decided link; a file pair is committed every
    `rotate` outcomes and on `close()`. Uncommitted work is simply fetched again by the next run."""

    def __init__(self, warc_dir: str, rotate: int = 1000, software: str = "webtext"):
        self.warc_dir, self.rotate, self.software = warc_dir, max(1, rotate), software
        self._lock = threading.Lock()
        self._warc = self._outcomes = None
        self.committed = []          # names of committed outcomes files

    def _open(self):
        self._id = uuid.uuid4().hex
        self._names = (f"fetch-{self._id}.warc.gz", f"outcomes-{self._id}.jsonl")
        self._warc, self._warc_n, self._pages = None, 0, 0
        self._outcomes = FileSystems.create(_join(self.warc_dir, f".{self._names[1]}.tmp"), compression_type=RAW)
        self._n = 0

    def _warc_file(self):
        if self._warc is None:
            self._warc = FileSystems.create(_join(self.warc_dir, f".{self._names[0]}.tmp"), compression_type=RAW)
            info = _record(lambda w: w.create_warcinfo_record(self._names[0], {
                "software": self.software, "format": "WARC File Format 1.1",
                "description": "webtext fetch: decoded payloads, WebText-Link header carries provenance"}))
            self._write_warc(info)
        return self._warc

    def _write_warc(self, data: bytes) -> int:
        offset = self._warc_n
        self._warc.write(data)
        self._warc_n += len(data)
        return offset

    def add(self, link: Link, result) -> None:
        """Record a FetchResult (crawl.fetch.fetcher) for `link`: the page as WARC records when ok, the outcome always."""
        with self._lock:
            if self._outcomes is None:
                self._open()
            warc_name, offset = None, None
            if result.outcome == "ok" and result.page is not None:
                self._warc_file()
                resp, req = page_records(result.page, result.capture)
                offset = self._write_warc(resp)
                self._write_warc(req)
                warc_name = self._names[0]
            line = {"url": link.url, "outcome": result.outcome, "detail": result.detail, "warc": warc_name,
                    "offset": offset, "link": link._asdict()}
            self._outcomes.write((json.dumps(line, sort_keys=True) + "\n").encode("utf-8"))
            self._n += 1
            if self._n >= self.rotate:
                self._commit()

    def _commit(self):
        if self._outcomes is None:
            return
        if self._warc is not None:
            self._warc.close()
            FileSystems.rename([_join(self.warc_dir, f".{self._names[0]}.tmp")], [_join(self.warc_dir, self._names[0])])
        self._outcomes.close()
        FileSystems.rename([_join(self.warc_dir, f".{self._names[1]}.tmp")], [_join(self.warc_dir, self._names[1])])
        self.committed.append(self._names[1])
        self._warc = self._outcomes = None

    def close(self) -> None:
        with self._lock:
            self._commit()


def _record(make) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True, warc_version="1.1")
    writer.write_record(make(writer))
    return buf.getvalue()


def page_records(page: Page, capture=None):
    """(response record bytes, request record bytes) for an ok page, each one gzip member."""
    status_line, req_headers, resp_headers = "200 OK", (), (("Content-Type", page.content_type),)
    if capture is not None:
        status_line, req_headers, resp_headers = capture.status_line, capture.request_headers, capture.response_headers
    headers = []
    for name, value in resp_headers:
        low = name.lower()
        if low in ("content-encoding", "transfer-encoding"):
            headers.append((f"X-Crawler-{name}", value))
        elif low != "content-length":
            headers.append((name, value))
    headers.append(("Content-Length", str(len(page.body))))
    date = datetime_to_iso_date(datetime.fromtimestamp(page.fetched_at, timezone.utc).replace(tzinfo=None),
                                use_micros=True)
    rec_id = f"<urn:uuid:{uuid.uuid4()}>"
    resp = _record(lambda w: w.create_warc_record(
        page.final_url, "response", payload=io.BytesIO(page.body),
        http_headers=StatusAndHeaders(status_line, headers, protocol="HTTP/1.1"),
        warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": rec_id, LINK_HEADER: link_to_json(page.link)}))
    path = page.final_url.split("/", 3)[3] if page.final_url.count("/") >= 3 else ""
    host = page.final_url.split("/", 3)[2] if page.final_url.count("/") >= 2 else ""
    req_list = [(k, v) for k, v in req_headers if k.lower() != "host"] + [("Host", host)]
    req = _record(lambda w: w.create_warc_record(
        page.final_url, "request", payload=io.BytesIO(b""),
        http_headers=StatusAndHeaders(f"GET /{path} HTTP/1.1", req_list, protocol="HTTP/1.1", is_http_request=True),
        warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": rec_id}))
    return resp, req


def _page_from_record(record, link: Optional[Link]) -> Page:
    ctype = record.http_headers.get_header("Content-Type") or ""
    body = record.raw_stream.read()
    if link is None:
        link = link_from_json(record.rec_headers.get_header(LINK_HEADER))
    when = iso_date_to_datetime(record.rec_headers.get_header("WARC-Date")).replace(tzinfo=timezone.utc)
    return Page(link, record.rec_headers.get_header("WARC-Target-URI"), int(record.http_headers.get_statuscode()),
                media_type(ctype) or "text/html", body, detect_encoding(ctype, body), when.timestamp())


# ---------------------------------------------------------------------------------------------- reading back
def outcome_files(warc_dir: str) -> list:
    """Committed outcomes files, sorted (temp names start with '.' and do not match)."""
    try:
        found = FileSystems.match([_join(warc_dir, "outcomes-*.jsonl")])[0].metadata_list
    except Exception:       # no directory yet
        return []
    return sorted(m.path for m in found)


def parse_outcomes(lines: Iterable[str]) -> Iterator[Captured]:
    for line in lines:
        line = line.strip()
        if line:
            d = json.loads(line)
            link = link_from_json(json.dumps(d["link"]))
            yield Captured(d["url"], d["outcome"], d.get("detail", ""), d.get("warc"), d.get("offset"), link)


def preference(rec: Captured):
    """Sort key choosing one record when a URL was decided more than once (a retried failure, overlapping runs):
    an ok capture first, then the smallest record, so every reader and runner picks the same one."""
    return rec.outcome != "ok", rec.outcome, rec.warc or "", rec.offset or 0


def load_page(warc_dir: str, rec: Captured, link: Optional[Link] = None) -> Page:
    """The Page of an ok outcome, from its WARC record (with `link`, or the Link stored in the record)."""
    with FileSystems.open(_join(warc_dir, rec.warc), compression_type=RAW) as f:
        f.seek(rec.offset)
        record = next(iter(ArchiveIterator(f)))
        return _page_from_record(record, link or rec.link)


def _response_pages(warc_path: str) -> Iterator[Page]:
    with FileSystems.open(warc_path, compression_type=RAW) as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response" and record.rec_headers.get_header(LINK_HEADER):
                yield _page_from_record(record, None)


# ---------------------------------------------------------------------------------------------- Beam
def _ok_outcomes(readable_file) -> Iterator:
    with readable_file.open(compression_type=RAW) as f:
        lines = f.read().decode("utf-8").splitlines()
    for rec in parse_outcomes(lines):
        if rec.outcome == "ok" and rec.warc:
            yield rec.url, rec


class ReadWarcPages(beam.PTransform):
    """PBegin -> PCollection[Page]: the ok outcomes of `warc_dir` (or, with no outcome logs, every response record
    with a WebText-Link header), read in parallel, one Page per URL, so extraction can be rerun with no network
    (`webtext extract --warc DIR`)."""

    def __init__(self, warc_dir: str):
        super().__init__()
        self.warc_dir = warc_dir

    def expand(self, pbegin):
        warc_dir = self.warc_dir
        if outcome_files(warc_dir):
            return (pbegin
                    | "MatchOutcomes" >> fileio.MatchFiles(_join(warc_dir, "outcomes-*.jsonl"))
                    | "ReadOutcomes" >> fileio.ReadMatches()
                    | "OkOutcomes" >> beam.FlatMap(_ok_outcomes)
                    | "OnePerURL" >> beam.CombinePerKey(lambda recs: min(recs, key=preference))
                    | "LoadPages" >> beam.Map(lambda kv: load_page(warc_dir, kv[1])))
        # No outcome logs (WARCs from elsewhere, or copied alone): every response record with a WebText-Link.
        return (pbegin
                | "MatchWarcs" >> fileio.MatchFiles(_join(warc_dir, "fetch-*.warc.gz"))
                | "Paths" >> beam.Map(lambda m: m.path)
                | "Responses" >> beam.FlatMap(_response_pages)
                | "ByURL" >> beam.Map(lambda page: (page.link.url, page))
                | "OnePagePerURL" >> beam.CombinePerKey(lambda pages: min(pages, key=lambda p: (p.fetched_at, p.final_url)))
                | "Pages" >> beam.Values())
