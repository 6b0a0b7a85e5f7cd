"""Bytes of a dump file to lines, in bounded memory whatever the input.

zstd is fed ZSTD_FEED compressed bytes per call, so one call yields at most ~16 MiB even for an RLE bomb; Pushshift
dumps need a 2 GiB window (window log 31), which zstd refuses by default. Lines are split per chunk with a partial
line kept as a list of parts (no growing buffer re-sliced on every read); a line over `max_line` is skipped to its
newline and reported once as TOO_LONG.

Damaged input keeps everything decoded before the damage: the bytes decompressed so far are passed on, then
UnreadableInput says where and why (`reason`: truncated_file or corrupt_file) and whether a line was cut there.
zstd cannot resynchronize after a corrupt block (the next frame's start cannot be told from data), so the rest
of that file is skipped; the same holds for gzip, xz and bz2.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import IO, Iterable, Iterator, List, Optional

import zstandard

ZSTD_MAX_WINDOW = 2 ** 31
MAX_LINE = 1 << 20          # longest dump line read (bytes); a longer one is skipped to its newline, one malformed_line
CHUNK = 1 << 20             # decompressed bytes handed to the line splitter at a time
ZSTD_FEED = 512             # compressed bytes per decompress call: zstd's best case (RLE blocks) is ~32,000:1,
                            # so one call yields at most ~16 MiB however the frame was made
TOO_LONG = None             # what iter_lines yields for a line over the cap


class UnreadableInput(OSError):
    """Decoding stopped at damaged input; what was decoded before it has been passed on. `reason` is the drop
    reason, `cut_line` whether a line was cut by the damage (it is counted as malformed, not kept)."""
    reason = "corrupt_file"

    def __init__(self, detail: str, cut_line: bool = False):
        super().__init__(detail)
        self.cut_line = cut_line


class TruncatedInput(UnreadableInput):
    reason = "truncated_file"


# What a decompressor raises on damaged bytes: zstd, zlib (gzip's deflate data), gzip headers (OSError), lzma,
# bz2 (OSError), and EOFError for a stream that ends inside a member.
DECODE_ERRORS = (OSError, EOFError, zstandard.ZstdError, lzma.LZMAError, zlib.error)


def unreadable(e: BaseException, cut_line: bool = False) -> UnreadableInput:
    """The UnreadableInput for a decompressor's error."""
    if isinstance(e, UnreadableInput):
        e.cut_line = e.cut_line or cut_line
        return e
    if isinstance(e, EOFError):
        return TruncatedInput(f"ends inside a compressed member (truncated file): {e}", cut_line)
    return UnreadableInput(f"cannot be decoded from here on ({type(e).__name__}: {e})", cut_line)


def _zstd_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    """Decompressed bytes of a multi-frame zstd stream in bounded pieces; raises on a truncated last frame
    (zstandard's stream_reader just stops there, and its decompressobj has no output bound)."""
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    dobj, in_frame, out, size = dctx.decompressobj(), False, [], 0
    total, frames, frame_at = 0, 0, 0     # compressed bytes read, frames finished, where this frame starts
    while True:
        data = raw.read(CHUNK)
        if not data:
            break
        view, pos, base = memoryview(data), 0, total     # base: where view[0] is in the file
        total += len(data)
        while pos < len(view):
            piece = view[pos:pos + ZSTD_FEED]
            pos += len(piece)
            in_frame = True
            try:
                got = dobj.decompress(piece)
            except zstandard.ZstdError as e:
                if out:                     # what the frames before (and this one so far) gave is kept
                    yield b"".join(out)
                raise UnreadableInput(f"zstd frame {frames + 1} (at compressed byte {frame_at}) cannot be "
                                      f"decoded ({e}); the rest of the file is skipped") from None
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
                frames += 1
                frame_at = base + pos - len(rest)
                if rest:
                    view, pos, base = memoryview(rest + bytes(view[pos:])), 0, frame_at
            if size >= CHUNK:
                yield b"".join(out)
                out, size = [], 0
    if out:
        yield b"".join(out)
    if in_frame:
        raise TruncatedInput(f"zstd stream ends inside frame {frames + 1} (at compressed byte {frame_at}): "
                             "truncated file")


def _plain_chunks(f) -> Iterator[bytes]:
    while True:
        data = f.read(CHUNK)
        if not data:
            return
        yield data


def _read_chunks(f) -> Iterator[bytes]:
    """read1 pieces (gzip/lzma/bz2 bound each) joined up to CHUNK: at damaged data, only the piece being
    decoded is lost, not the up to CHUNK bytes a read(CHUNK) had gathered."""
    out, size = [], 0
    try:
        while True:
            data = f.read1(CHUNK)
            if not data:
                break
            out.append(data)
            size += len(data)
            if size >= CHUNK:
                yield b"".join(out)
                out, size = [], 0
    except DECODE_ERRORS as e:
        if out:
            yield b"".join(out)
        raise unreadable(e) from None
    if out:
        yield b"".join(out)


def _stream_chunks(raw: IO[bytes], make, kind: str) -> Iterator[bytes]:
    """Decompressed bytes of concatenated bz2 or xz streams, each call's output bounded. Python's BZ2File and
    LZMAFile take a later stream that fails to decode for trailing garbage and stop without a word, so every
    line in it would vanish uncounted; here damage is an UnreadableInput (NUL padding between streams, which
    xz allows, is skipped)."""
    d, feed, out, size, streams, in_stream, at = make(), b"", [], 0, 0, False, 0
    try:
        while True:
            if d.eof:
                feed, d, in_stream, streams = d.unused_data, make(), False, streams + 1
            if not in_stream:
                feed = feed.lstrip(b"\0")
            if not feed and d.needs_input:
                feed = raw.read(CHUNK)
                if not feed:
                    break
                at += len(feed)
                continue
            in_stream = True
            got = d.decompress(feed, CHUNK)
            feed = b""
            if got:
                out.append(got)
                size += len(got)
                if size >= CHUNK:
                    yield b"".join(out)
                    out, size = [], 0
    except (OSError, EOFError, lzma.LZMAError) as e:
        if out:
            yield b"".join(out)
        raise UnreadableInput(f"{kind} stream {streams + 1} cannot be decoded ({e}, near compressed byte "
                              f"{at}); the rest of the file is skipped") from None
    if out:
        yield b"".join(out)
    if in_stream:
        raise TruncatedInput(f"{kind} stream {streams + 1} is cut short (truncated file)")


def iter_chunks(raw: IO[bytes], name: str) -> Iterator[bytes]:
    """Decompressed bytes of one file, as its name says, in pieces of bounded size."""
    lower = name.lower()
    if lower.endswith(".zst") or lower.endswith(".zstd"):
        return _zstd_chunks(raw)
    if lower.endswith(".gz"):
        return _read_chunks(gzip.GzipFile(fileobj=raw))
    if lower.endswith(".xz") or lower.endswith(".lzma"):
        return _stream_chunks(raw, lzma.LZMADecompressor, "xz")
    if lower.endswith(".bz2"):
        return _stream_chunks(raw, bz2.BZ2Decompressor, "bz2")
    return _plain_chunks(raw)


def iter_line_batches(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[List[Optional[bytes]]]:
    """Lines (without the newline) from byte chunks, a list per chunk; TOO_LONG (None) once for each line over
    `max_line`, whose bytes are skipped up to the next newline, never held. A partial line is kept as a list of
    parts, so a line spread over many chunks is joined once (no re-slicing of a growing buffer). Damaged input
    raises UnreadableInput after every whole line before it, its `cut_line` set if a line was cut there."""
    parts: List[bytes] = []
    held, skipping = 0, False
    chunks = iter(chunks)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except DECODE_ERRORS as e:   # damaged input: the line held so far was cut there
            raise unreadable(e, cut_line=bool(parts)) from None
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
