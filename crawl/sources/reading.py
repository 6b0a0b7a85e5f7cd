"""Bytes of a dump file to lines, in bounded memory whatever the input.

zstd is fed ZSTD_FEED compressed bytes per call, so one call yields at most ~16 MiB even for an RLE bomb; Pushshift
dumps need a 2 GiB window (window log 31), which zstd refuses by default. Lines are split per chunk with a partial
line kept as a list of parts (no growing buffer re-sliced on every read); a line over `max_line` is skipped to its
newline and reported once as TOO_LONG.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
from typing import IO, Iterable, Iterator, List, Optional

import zstandard

ZSTD_MAX_WINDOW = 2 ** 31
MAX_LINE = 1 << 20          # longest dump line read (bytes); a longer one is skipped to its newline, one malformed_line
CHUNK = 1 << 20             # decompressed bytes handed to the line splitter at a time
ZSTD_FEED = 512             # compressed bytes per decompress call: zstd's best case (RLE blocks) is ~32,000:1,
                            # so one call yields at most ~16 MiB however the frame was made
TOO_LONG = None             # what iter_lines yields for a line over the cap


class TruncatedInput(OSError):
    pass


def _zstd_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    """Decompressed bytes of a multi-frame zstd stream in bounded pieces; raises on a truncated last frame
    (zstandard's stream_reader just stops there, and its decompressobj has no output bound)."""
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    dobj, in_frame, out, size = dctx.decompressobj(), False, [], 0
    while True:
        data = raw.read(CHUNK)
        if not data:
            break
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            piece = view[pos:pos + ZSTD_FEED]
            pos += len(piece)
            in_frame = True
            got = dobj.decompress(piece)
            if len(got) >= CHUNK:           # big already (a highly compressible stretch): pass it on unjoined
                if out:
                    yield b"".join(out)
                    out, size = [], 0
                yield got
            elif got:
                out.append(got)
                size += len(got)
            if dobj.eof:   # frame finished: anything after it starts the next frame
                rest = dobj.unused_data
                dobj, in_frame = dctx.decompressobj(), False
                if rest:
                    view, pos = memoryview(rest + bytes(view[pos:])), 0
            if size >= CHUNK:
                yield b"".join(out)
                out, size = [], 0
    if out:
        yield b"".join(out)
    if in_frame:
        raise TruncatedInput("zstd stream ends inside a frame (truncated file)")


def _read_chunks(f) -> Iterator[bytes]:
    while True:
        data = f.read(CHUNK)   # gzip/lzma/bz2 readers bound what one read() returns
        if not data:
            return
        yield data


def iter_chunks(raw: IO[bytes], name: str) -> Iterator[bytes]:
    """Decompressed bytes of one file, as its name says, in pieces of bounded size."""
    lower = name.lower()
    if lower.endswith(".zst") or lower.endswith(".zstd"):
        return _zstd_chunks(raw)
    if lower.endswith(".gz"):
        return _read_chunks(gzip.GzipFile(fileobj=raw))
    if lower.endswith(".xz") or lower.endswith(".lzma"):
        return _read_chunks(lzma.LZMAFile(raw))
    if lower.endswith(".bz2"):
        return _read_chunks(bz2.BZ2File(raw))
    return _read_chunks(raw)


def iter_line_batches(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[List[Optional[bytes]]]:
    """Lines (without the newline) from byte chunks, a list per chunk; TOO_LONG (None) once for each line over
    `max_line`, whose bytes are skipped up to the next newline, never held. A partial line is kept as a list of
    parts, so a line spread over many chunks is joined once (no re-slicing of a growing buffer)."""
    parts: List[bytes] = []
    held, skipping = 0, False
    for chunk in chunks:
        start = 0
        if skipping:
            start = chunk.find(b"\n") + 1
            if not start:
                continue
            skipping = False
        end = chunk.rfind(b"\n")
        if end < start:                     # no newline in the rest of this chunk: the line goes on
            rest = len(chunk) - start       # lengths first: an over-long piece is never copied
            if held + rest > max_line:
                parts, held, skipping = [], 0, True
                yield [TOO_LONG]
            elif rest:
                parts.append(chunk[start:] if start else chunk)
                held += rest
            continue
        lines: List[Optional[bytes]] = chunk[start:end].split(b"\n")
        if len(chunk) > max_line:           # only then can a line inside this chunk be too long
            lines = [line if len(line) <= max_line else TOO_LONG for line in lines]
        if parts:
            first = lines[0]
            lines[0] = (b"".join(parts) + first if first is not TOO_LONG and held + len(first) <= max_line
                        else TOO_LONG)
            parts, held = [], 0
        rest = len(chunk) - end - 1
        if rest > max_line:
            skipping = True
            lines.append(TOO_LONG)
        elif rest:
            parts, held = [chunk[end + 1:]], rest
        yield lines
    if parts:
        yield [b"".join(parts)]


def iter_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[Optional[bytes]]:
    for lines in iter_line_batches(chunks, max_line):
        yield from lines
