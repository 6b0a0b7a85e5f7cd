"""A large-window .zst decompressed in a child process, so its window is never in the reading (Beam) process.

zstd's decoder holds a window that grows with the bytes it has decompressed, up to what the frame header declares:
2 GiB for a Pushshift dump (window log 31), so reading a month would hold ~2 GiB in the process that runs the
pipeline. Here a plain child (`sys.executable`, no multiprocessing: nothing of the user's __main__ is re-imported)
runs reading._zstd_chunks on the compressed bytes the reading process feeds it through its stdin (from the
stream Beam opened, so gs:// and other FileSystems paths work too, and the progress bar still counts compressed
bytes), and sends back the chunks, then a status record that becomes the same UnreadableInput / TruncatedInput
with the same message. So results, drops and their details are exactly those of the in-process reader, and the
decompression runs on another core beside the line parsing.

A file whose first frame declares a window of at most IN_PROCESS_WINDOW (what zstd's levels 1-19 use) is read
in process: its window is small, and a child costs ~50 ms to start (a later frame with a larger window would then
grow in process; Pushshift's frames all declare 2 GiB). A child that cannot start (no usable
sys.executable) also means in-process reading, with the same results. Every wait on the child is bounded
(STALL_S); the child dies with the reading process (PR_SET_PDEATHSIG on Linux; everywhere, EOF on its stdin or a
broken pipe on its stdout ends it).
"""
from __future__ import annotations

import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Iterator, Optional

import zstandard

from core import linux
from crawl.sources import reading
from crawl.sources.reading import CHUNK, TruncatedInput, UnreadableInput, _zstd_chunks

IN_PROCESS_WINDOW = 8 << 20   # zstd's levels 1-19 declare at most 8 MiB; --long and Pushshift's 2 GiB go to a child
STALL_S = 300.0     # a child that sends nothing this long while it has input is stuck: it is killed, the rest of the
                    # file is one corrupt_file. A 1 MiB chunk costs it milliseconds, so this is ~10^4 times that and
                    # holds on a machine swapping hard; the wait for the source's own reads is not counted.
START_S = 60.0      # for the child's first word (an interpreter start and `import zstandard`: ~50 ms)
PIPE_SIZE = 1 << 20  # pipe buffer asked for (Linux's default limit): fewer wake-ups than the default 64 KiB
FRAME_HEADER_MAX = 18   # bytes of a zstd frame header at most (ZSTD_FRAMEHEADERSIZE_MAX)

HEADER = struct.Struct(">cQ")   # tag, payload length
READY, DATA, LAST, END, TRUNCATED, UNREADABLE, FAILED = TAGS = b"R", b"D", b"L", b"E", b"T", b"U", b"X"
AHEAD = 16          # chunks (~1 MiB each) the child may decompress ahead of the reader
MAX_RECORD = 1 << 26   # a chunk is at most ~16 MiB (one decompress call, see reading.ZSTD_FEED)
ROOT = str(Path(__file__).resolve().parents[2])   # the folder holding the `crawl` package, for the child's sys.path
CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from crawl.sources.unzstd import child; child(int(sys.argv[2]))"


class ChildLost(Exception):
    """The child ended or went silent before its status record."""


def iter_chunks(raw: IO[bytes], name: str) -> Iterator[bytes]:
    """reading.iter_chunks, with a large-window .zst decompressed in a child process."""
    lower = name.lower()
    if lower.endswith(".zst") or lower.endswith(".zstd"):
        return zstd_chunks(raw)
    return reading.iter_chunks(raw, name)


def zstd_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    """What reading._zstd_chunks yields and raises, decompressed in a child when the first frame's window is
    large."""
    first = b""
    while len(first) < FRAME_HEADER_MAX:
        data = raw.read(CHUNK)
        if not data:
            break
        first += data
    proc = _start() if first and _window(first) > IN_PROCESS_WINDOW else None
    if proc is None:
        yield from _zstd_chunks(_Prepended(first, raw))
    else:
        yield from _from_child(proc, first, raw)


def _window(data: bytes) -> int:
    try:
        return zstandard.get_frame_parameters(data).window_size
    except zstandard.ZstdError:    # not a frame header: the in-process reader says what is wrong, as before
        return 0


class _Prepended:
    """`raw` with the bytes already read from it put back in front."""

    def __init__(self, first: bytes, raw: IO[bytes]):
        self.first, self.raw = first, raw

    def read(self, n: int) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.raw.read(n)


def _start() -> Optional[subprocess.Popen]:
    """A child that has said it is ready, or None (the caller reads in process)."""
    if not hasattr(select, "poll"):   # pragma: no cover - Windows: pipes cannot be polled there
        return None
    try:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, str(os.getpid())], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    for f in (proc.stdin, proc.stdout):
        try:
            import fcntl
            fcntl.fcntl(f.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (ImportError, AttributeError, OSError):
            pass
    try:
        tag, _ = _receive(proc, None, START_S)
    except ChildLost:
        tag = None
    if tag != READY:
        _stop(proc, None)
        return None
    return proc


def _from_child(proc: subprocess.Popen, first: bytes, raw: IO[bytes]) -> Iterator[bytes]:
    feeder = _Feeder(proc, first, raw)
    feeder.start()
    try:
        while True:
            try:
                tag, payload = _receive(proc, feeder, STALL_S)
            except ChildLost as e:
                raise UnreadableInput(f"{e}; the rest of the file is skipped") from None
            if tag == DATA:
                yield payload
            elif tag == LAST:       # decoded after the end of the input: dropped if that end was a read error,
                if feeder.error is None:   # as the in-process reader loses it when raw.read raises
                    yield payload
            elif tag in (END, TRUNCATED) and feeder.error is not None:
                raise feeder.error  # the input ended at the source's read error (damage before it came first)
            elif tag == END:
                return
            elif tag == TRUNCATED:
                raise TruncatedInput(payload.decode("utf-8", "replace"))
            elif tag == UNREADABLE:
                raise UnreadableInput(payload.decode("utf-8", "replace"))
            else:
                raise UnreadableInput(f"the zstd decompressing process failed ({payload.decode('utf-8', 'replace')}"
                                      "); the rest of the file is skipped")
    finally:
        _stop(proc, feeder)


class _Feeder(threading.Thread):
    """Copies the compressed bytes from `raw` to the child's stdin, then closes it (the child's EOF). A read
    error is kept for the reader to raise; a write error means the child is gone, which the reader sees."""

    def __init__(self, proc: subprocess.Popen, first: bytes, raw: IO[bytes]):
        super().__init__(name="unzstd-feed", daemon=True)
        self.proc, self.first, self.raw = proc, first, raw
        self.error: Optional[BaseException] = None
        self.moved = time.monotonic()     # when bytes last went to the child
        self.reading = False              # waiting on the source (not counted against the child)

    def run(self):
        fd, data = self.proc.stdin.fileno(), self.first
        self.first = b""
        try:
            while data:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                self.moved = time.monotonic()
                self.reading = True
                try:
                    data = self.raw.read(CHUNK)
                except Exception as e:    # noqa: BLE001 - raised by the reader, as the in-process reader would
                    self.error = e
                    return
                finally:
                    self.reading = False
        except OSError:                   # the child is gone (killed, or stopped reading)
            pass
        finally:
            self.proc.stdin.close()

    def idle_since(self) -> float:
        return time.monotonic() if self.reading else self.moved


def _receive(proc: subprocess.Popen, feeder: Optional[_Feeder], bound: float):
    """(tag, payload) of the child's next record."""
    tag, size = HEADER.unpack(_read(proc, HEADER.size, feeder, bound))
    if tag not in TAGS or size > MAX_RECORD:   # not our child talking (an odd sys.executable)
        raise ChildLost("the zstd decompressing process sent something that is not a record")
    return tag, _read(proc, size, feeder, bound) if size else b""


def _read(proc: subprocess.Popen, n: int, feeder: Optional[_Feeder], bound: float) -> bytes:
    fd, pieces, got = proc.stdout.fileno(), [], 0
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    heard, slice_ms = time.monotonic(), max(1, int(min(bound / 4, 1.0) * 1000))
    while got < n:
        while not poller.poll(slice_ms):
            now = time.monotonic()
            quiet = now - max(heard, feeder.idle_since() if feeder is not None else heard)
            if quiet > bound:
                raise ChildLost(f"the zstd decompressing process sent nothing for {bound:g} s and was stopped")
        data = os.read(fd, n - got)
        if not data:
            raise ChildLost(f"the zstd decompressing process ended early (exit status {_exit_status(proc)})")
        heard = time.monotonic()
        pieces.append(data)
        got += len(data)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _exit_status(proc: subprocess.Popen):
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return "none yet"


def _stop(proc: subprocess.Popen, feeder: Optional[_Feeder]) -> None:
    """The child killed and reaped (it has sent its last record, or is no longer wanted), the feeder ended."""
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:   # pragma: no cover - a kill that does not take
            pass
    proc.stdout.close()
    if feeder is None:
        proc.stdin.close()
    else:
        feeder.join(timeout=10)     # it ends at its next write (EPIPE) or when the source's read returns


# --- the child -------------------------------------------------------------------------------------------------

def child(parent: int) -> None:
    """Entry point of the child: compressed bytes on stdin, records on stdout. A thread writes the records, so
    decompression goes on while a write waits for the reader: up to AHEAD chunks ahead, which rides out the
    scheduling delays of a busy machine."""
    _die_with(parent)
    out = os.fdopen(1, "wb", buffering=0, closefd=False)
    records: "queue.Queue" = queue.Queue(AHEAD)
    writer = threading.Thread(target=_write_records, args=(out, records), daemon=True)
    writer.start()
    source = _Stdin()
    try:
        records.put((READY, b""))
        try:
            for chunk in _zstd_chunks(source):
                records.put((LAST if source.eof else DATA, chunk))
        except TruncatedInput as e:
            records.put((TRUNCATED, str(e).encode("utf-8", "replace")))
        except UnreadableInput as e:
            records.put((UNREADABLE, str(e).encode("utf-8", "replace")))
        except Exception as e:   # noqa: BLE001 - reported to the reader, which names it in the drop
            records.put((FAILED, f"{type(e).__name__}: {e}".encode("utf-8", "replace")))
        else:
            records.put((END, b""))
        records.put(None)
        writer.join()
    finally:
        os._exit(0)      # no interpreter teardown: nothing is left to flush


def _write_records(out, records: "queue.Queue") -> None:
    try:
        while True:
            record = records.get()
            if record is None:
                return
            _send(out, *record)
    except OSError:        # a broken pipe: the reader is gone or done with us
        os._exit(0)


class _Stdin:
    def __init__(self):
        self.raw = os.fdopen(0, "rb", buffering=0, closefd=False)
        self.eof = False

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        self.eof = not data
        return data


def _send(out, tag: bytes, payload: bytes) -> None:
    out.write(HEADER.pack(tag, len(payload)))
    view = memoryview(payload)
    while view:
        view = view[out.write(view):]


def _die_with(parent: int) -> None:
    """SIGKILL when the reading process dies (Linux), and an exit if it already has. Ctrl-C (sent to the whole
    process group) is for the reading process to handle; this child ends with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    linux.die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
