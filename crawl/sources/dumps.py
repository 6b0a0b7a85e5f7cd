"""Sources of submissions: Pushshift dumps (RS_*.zst, plain/.gz/.xz/.bz2 NDJSON) and plain URL lists.

Pushshift's zstd dumps are written with a 2 GiB window (window log 31), which zstd refuses by default, so every
.zst is opened with `max_window_size=2**31`. One pass per file decompresses, parses and converts; a line that is
not a JSON object with the fields we need is counted as `malformed_line` and skipped, never fatal.
A URL list has one `URL [KARMA]` per line (a URL without karma is taken as eligible: karma = `default_karma`).
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from typing import IO, Iterator, Union

import apache_beam as beam
import zstandard
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

from core.records import DROPPED, SOURCE, Drop, Step, Submission

ZSTD_MAX_WINDOW = 2 ** 31


class TruncatedInput(OSError):
    pass


class _ZstdReader(io.RawIOBase):
    """Multi-frame zstd reader that raises on a truncated last frame (zstandard's stream_reader just stops)."""

    def __init__(self, raw: IO[bytes], chunk: int = 1 << 20):
        self.raw, self.chunk, self.pending = raw, chunk, b""
        self.dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self.dobj, self.in_frame = self.dctx.decompressobj(), False

    def readable(self):
        return True

    def readinto(self, buf) -> int:
        while not self.pending:
            data = self.raw.read(self.chunk)
            if not data:
                if self.in_frame:
                    raise TruncatedInput("zstd stream ends inside a frame (truncated file)")
                return 0
            while data:
                self.in_frame = True
                self.pending += self.dobj.decompress(data)
                data = b""
                if self.dobj.eof:   # frame finished: anything after it starts the next frame
                    data, self.dobj, self.in_frame = self.dobj.unused_data, self.dctx.decompressobj(), False
        n = min(len(buf), len(self.pending))
        buf[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


def open_decompressed(raw: IO[bytes], name: str) -> IO[bytes]:
    """Wrap a raw byte stream with the decompressor its file name calls for."""
    lower = name.lower()
    if lower.endswith(".zst") or lower.endswith(".zstd"):
        return _ZstdReader(raw)
    if lower.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)
    if lower.endswith(".xz") or lower.endswith(".lzma"):
        return lzma.LZMAFile(raw)
    if lower.endswith(".bz2"):
        return bz2.BZ2File(raw)
    return raw


def parse_dump_line(line: Union[bytes, str], source: str = "") -> Union[Submission, str]:
    """A Submission from one Pushshift NDJSON line, or the reason it is malformed (a short string)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(obj, dict):
        return "not a JSON object"
    try:
        url = obj["url"]
        if not isinstance(url, str):
            return "url is not a string"
        return Submission(
            id=str(obj.get("id") or obj.get("name") or ""),
            url=url,
            karma=int(obj["score"]),
            is_self=bool(obj.get("is_self", False)),
            over_18=bool(obj.get("over_18", False)),
            subreddit=str(obj.get("subreddit") or ""),
            created_utc=int(float(obj.get("created_utc") or 0)),
            source=source,
        )
    except KeyError as e:
        return f"missing field {e.args[0]}"
    except (TypeError, ValueError) as e:
        return f"bad field value ({e})"


def parse_url_line(line: str, source: str, lineno: int, default_karma: int) -> Union[Submission, str]:
    parts = line.split()
    if len(parts) > 2:
        return "expected `URL [KARMA]`"
    try:
        karma = int(parts[1]) if len(parts) == 2 else default_karma
    except ValueError:
        return "karma is not an integer"
    return Submission(id=f"{source}:{lineno}", url=parts[0], karma=karma, is_self=False, over_18=False,
                      subreddit="", created_utc=0, source="url-list")


def iter_file(stream: IO[bytes], name: str, default_karma: int = 3) -> Iterator[Union[Submission, Drop]]:
    """Submissions (or Drops for malformed lines) from one source file, decompressing as its name says.

    The format is chosen by the first non-empty line: `{` means a Pushshift dump, anything else a URL list.
    """
    short = name.rsplit("/", 1)[-1]
    is_dump = None
    for lineno, raw in enumerate(io.BufferedReader(open_decompressed(stream, name), 1 << 20), 1):
        line = raw.strip()
        if not line:
            continue
        if is_dump is None:
            is_dump = line.startswith(b"{")
        if is_dump:
            result = parse_dump_line(line, short)
        else:
            try:
                result = parse_url_line(line.decode("utf-8"), short, lineno, default_karma)
            except UnicodeDecodeError:
                result = "not UTF-8"
        if isinstance(result, str):
            yield Drop(SOURCE, "malformed_line", "", f"{short}:{lineno}: {result}")
        else:
            yield result


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
            except (OSError, EOFError, zstandard.ZstdError, lzma.LZMAError) as e:
                # A truncated or corrupt archive: keep what was read, count the rest as one malformed line.
                self.count("in")
                yield from self.emit(self.drop("malformed_line", "", f"{name}: unreadable from here on ({e})"))


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
