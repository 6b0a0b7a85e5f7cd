"""Sources of submissions: Pushshift dumps (RS_*.zst, plain/.gz/.xz/.bz2 NDJSON) and plain URL lists.

Pushshift's zstd dumps are written with a 2 GiB window (window log 31), which zstd refuses by default, so every
.zst is opened with `max_window_size=2**31`. One pass per file decompresses, parses and converts; a line that is
not a JSON object with the fields we need is counted as `malformed_line` and skipped, never fatal.
A URL list has one `URL [KARMA]` per line (a URL without karma is taken as eligible: karma = `default_karma`).
"""
from __future__ import annotations

import io
import json
from typing import IO, Any, Iterator, Tuple, Union

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from core.records import DROPPED, SOURCE, Drop, Step, Submission
from crawl.sources.reading import (CHUNK, DECODE_ERRORS, MAX_LINE, TOO_LONG, ZSTD_MAX_WINDOW,  # noqa: F401
                                   TruncatedInput, UnreadableInput, iter_line_batches, iter_lines)
from crawl.sources.unzstd import iter_chunks   # a large-window .zst is decompressed in a child process

INT64 = 2 ** 63             # karma and created_utc go to int64 Arrow columns


def _as_int(value) -> int:
    """An int64 from a JSON number or numeric string; ValueError otherwise (inf, nan, 1e400, huge, bool)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if not isinstance(value, int):
        value = float(value) if not isinstance(value, float) else value
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        value = int(value)
    if not -INT64 <= value < INT64:
        raise ValueError("number out of range")
    return value


_raw_decode = json.JSONDecoder().raw_decode


def parse_dump_obj(line: Union[bytes, str]) -> Union[dict, str]:
    """The JSON object of one stripped dump line, or why it is not one. Never raises."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        obj, end = _raw_decode(text)   # json.loads minus its encoding sniffing; a stripped line has no padding
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    except RecursionError:
        return "nested too deeply"
    if end != len(text):
        return "not JSON"
    if type(obj) is not dict:
        return "not a JSON object"
    return obj


_MISSING = object()


def _fields(url, score, is_self, over_18, created, subreddit, sid) -> Union[tuple, str]:
    """(url, karma, is_self, over_18, created_utc, subreddit, id) from raw JSON values, or why a record cannot
    hold them. _MISSING marks an absent key."""
    if url is _MISSING or score is _MISSING:
        return f"missing field {'url' if url is _MISSING else 'score'}"
    if type(url) is not str:
        return "url is not a string"
    try:
        # the common case inline (a dump has millions of lines); anything else through _as_int's checks
        if type(score) is not int or not -INT64 <= score < INT64:
            score = _as_int(score)
        created = created or 0
        if type(created) is not int or not -INT64 <= created < INT64:
            created = _as_int(created)
    except (TypeError, ValueError, OverflowError) as e:
        return f"bad field value ({str(e)[:80]})"
    return url, score, bool(is_self), bool(over_18), created, _text(subreddit), _text(sid)


def _text(value) -> str:
    if not value:
        return ""
    return value if type(value) is str else str(value)[:200]


def not_unicode(*values) -> bool:
    """True if one of the strings holds a lone surrogate (JSON's "\\ud800" escape): it cannot be encoded as UTF-8,
    so it would fail the first encoder downstream (URL normalization, _drops/, Arrow, WARC). ASCII is checked
    in C; only other text is encoded."""
    for value in values:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def submission_fields(obj: dict) -> Union[tuple, str]:
    """(url, karma, is_self, over_18, created_utc, subreddit, id) from a dump object, or why it is unusable.
    The json module accepts lone surrogate escapes: a line whose kept strings hold one is malformed (fields we
    do not keep, e.g. the title, do not matter)."""
    fields = _fields(obj.get("url", _MISSING), obj.get("score", _MISSING), obj.get("is_self", False),
                     obj.get("over_18", False), obj.get("created_utc"), obj.get("subreddit"),
                     obj.get("id") or obj.get("name"))
    if type(fields) is tuple and not_unicode(fields[0], fields[5], fields[6]):
        return "lone surrogate escape in url, subreddit or id (not Unicode)"
    return fields


try:   # msgspec decodes only the fields a submission needs, ~5-9x faster than json.loads building the whole dict
    import msgspec

    class _Row(msgspec.Struct):
        url: Any = _MISSING
        score: Any = _MISSING
        is_self: Any = False
        over_18: Any = False
        created_utc: Any = 0
        subreddit: Any = ""
        id: Any = ""
        name: Any = ""

    _decode_row = msgspec.json.Decoder(_Row).decode
    _DecodeError = msgspec.DecodeError
except ImportError:   # pragma: no cover - optional speed-up
    _decode_row, _DecodeError = None, ValueError


def dump_line_fields(line: bytes) -> Union[tuple, str]:
    """What submission_fields(json.loads(line)) gives, or why the line is malformed; never raises. Lines msgspec
    rejects (not an object, bad UTF-8, NaN, numbers out of range, lone surrogate escapes anywhere, ...) go through
    the json module, which says why or accepts what msgspec is stricter about, so the result does not depend on
    msgspec being installed. msgspec never returns a lone surrogate, so only that slow path checks for them."""
    if _decode_row is not None:
        try:
            r = _decode_row(line)
        except (_DecodeError, RecursionError):
            pass
        else:
            return _fields(r.url, r.score, r.is_self, r.over_18, r.created_utc, r.subreddit, r.id or r.name)
    obj = parse_dump_obj(line)
    return submission_fields(obj) if type(obj) is dict else obj


def parse_dump_line(line: Union[bytes, str], source: str = "") -> Union[Submission, str]:
    """A Submission from one Pushshift NDJSON line, or the reason it is malformed (a short string). Never raises."""
    fields = dump_line_fields(line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line)
    if isinstance(fields, str):
        return fields
    url, karma, is_self, over_18, created, subreddit, sid = fields
    return Submission(sid, url, karma, is_self, over_18, subreddit, created, source)


def url_fields(line: bytes, default_karma: int) -> Union[tuple, str]:
    """(url, karma, is_self, over_18, created_utc, subreddit, id=None) from one `URL [KARMA]` line, or why it is
    malformed."""
    try:
        parts = line.decode("utf-8").split()
    except UnicodeDecodeError:
        return "not UTF-8"
    if not parts:             # only Unicode whitespace (\x1c, \x85, \u2028...), which bytes.strip() leaves
        return "expected `URL [KARMA]`, got only whitespace"
    if len(parts) > 2:
        return "expected `URL [KARMA]`"
    try:
        karma = int(parts[1]) if len(parts) == 2 else default_karma
    except ValueError:
        return "karma is not an integer"
    if not -INT64 <= karma < INT64:
        return "karma out of range"
    return parts[0], karma, False, False, 0, "", None


def parse_url_line(line: str, source: str, lineno: int, default_karma: int) -> Union[Submission, str]:
    fields = url_fields(line.encode("utf-8", "surrogatepass"), default_karma)
    if isinstance(fields, str):
        return fields
    url, karma = fields[0], fields[1]
    return Submission(id=f"{source}:{lineno}", url=url, karma=karma, is_self=False, over_18=False,
                      subreddit="", created_utc=0, source="url-list")


class CountingReader(io.RawIOBase):
    """Passes reads through and reports the compressed bytes read so far (for a bytes-read progress bar)."""

    def __init__(self, raw: IO[bytes], report=None):
        self.raw, self.report, self.done = raw, report, 0

    def readable(self):
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.done += len(data)
        if self.report is not None:
            self.report(len(data))
        return data


def iter_fields(stream: IO[bytes], name: str, default_karma: int = 3, max_line: int = MAX_LINE):
    """Per chunk of one file, a list of (line number, fields or the reason the line is malformed) for its
    non-empty lines; fields are (url, karma, is_self, over_18, created_utc, subreddit, id; None for a URL list
    line, whose id is made from the file and line). The format is chosen
    by the first non-empty line: `{` means a Pushshift dump, anything else a URL list. Raises only for an
    unreadable archive (UnreadableInput, after every line before the damage and, when the damage cut a line, a
    last batch with that line as malformed). Lists, not one generator step per line: a dump has millions of
    lines."""
    is_dump = None
    lineno = 0
    too_long = f"line longer than {max_line} bytes"
    try:
        for lines in iter_line_batches(iter_chunks(stream, name), max_line):
            out = []
            for line in lines:
                lineno += 1
                if line is TOO_LONG:
                    out.append((lineno, too_long))
                    continue
                line = line.strip()
                if not line:
                    continue
                if is_dump is None:
                    is_dump = line.startswith(b"{")
                out.append((lineno, dump_line_fields(line) if is_dump else url_fields(line, default_karma)))
            yield out
    except UnreadableInput as e:
        if e.cut_line:   # the line the damage cut: malformed, like any line a record cannot come from
            yield [(lineno + 1, "line cut short by damaged input")]
        e.lines_before = lineno
        raise


def iter_parsed(stream: IO[bytes], name: str, default_karma: int = 3,
                max_line: int = MAX_LINE) -> Iterator[Tuple[int, Union[Submission, str]]]:
    """(line number, Submission or the reason the line is malformed) per non-empty line of one file."""
    short = name.rsplit("/", 1)[-1]
    for batch in iter_fields(stream, name, default_karma, max_line):
        for lineno, fields in batch:
            if type(fields) is str:
                yield lineno, fields
                continue
            url, karma, is_self, over_18, created, subreddit, sid = fields
            if sid is None:
                yield lineno, Submission(f"{short}:{lineno}", url, karma, False, False, "", 0, "url-list")
            else:
                yield lineno, Submission(sid, url, karma, is_self, over_18, subreddit, created, short)


def iter_file(stream: IO[bytes], name: str, default_karma: int = 3,
              max_line: int = MAX_LINE) -> Iterator[Union[Submission, Drop]]:
    """Submissions (or Drops for malformed lines) from one source file, decompressing as its name says."""
    short = name.rsplit("/", 1)[-1]
    for lineno, result in iter_parsed(stream, name, default_karma, max_line):
        if isinstance(result, str):
            yield Drop(SOURCE, "malformed_line", "", f"{short}:{lineno}: {result}")
        else:
            yield result


UNREADABLE = DECODE_ERRORS     # what a damaged archive raises (crawl/sources/reading.py)


def unreadable_drop(e: BaseException, name: str) -> Tuple[str, str]:
    """(reason, detail) of the one drop that stands for the unread rest of a damaged file: truncated_file or
    corrupt_file, naming the file and where (the line count so far) the damage begins."""
    reason = getattr(e, "reason", "corrupt_file")
    after = getattr(e, "lines_before", None)
    where = f" after line {after}" if after is not None else ""
    return reason, f"{name}{where}: {e}"


class _ReadFile(Step):
    """Stage "source": one file in, one count per line: in = lines, out = submissions, drop.malformed_line."""
    stage = SOURCE

    def __init__(self, default_karma: int):
        super().__init__()
        self.default_karma = default_karma

    def process(self, readable: fileio.ReadableFile):
        self.count("files")
        name = readable.metadata.path
        with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            try:
                for item in iter_file(raw, name, self.default_karma):
                    self.count("in")
                    yield from self.emit(item)
            except UNREADABLE as e:
                # A truncated or corrupt archive: what was read before is kept, the rest of the file is one drop.
                reason, detail = unreadable_drop(e, name)
                self.count("in")
                yield from self.emit(self.drop(reason, "", detail))


class ReadSubmissions(beam.PTransform):
    """File patterns -> Submissions (tagged outputs: `submissions`, `dropped`). One file is read in one pass;
    a Reshuffle after it spreads the submissions of a big monthly dump over all workers."""

    def __init__(self, patterns, default_karma: int = 3):
        super().__init__()
        self.patterns = list(patterns)
        self.default_karma = default_karma

    def expand(self, pbegin):
        read = (pbegin
                | "Patterns" >> beam.Create(self.patterns)
                | "Match" >> fileio.MatchAll()
                | "Open" >> fileio.ReadMatches()
                | "Parse" >> beam.ParDo(_ReadFile(self.default_karma)).with_outputs(DROPPED, main="submissions"))
        return {"submissions": read.submissions | "Spread" >> beam.Reshuffle(), DROPPED: read[DROPPED]}
