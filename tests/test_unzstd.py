"""A Pushshift-style .zst (2 GiB window) is decompressed in a child process (crawl/sources/unzstd.py): the window's
memory is never in the reading process, results and damage reports are those of the in-process reader, a reader
killed with SIGKILL leaves no child, a child that goes silent is stopped within the bound and its file counted."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import lru_cache
from pathlib import Path

import pytest
import zstandard

from crawl.sources import dumps, reading

ROOT = Path(__file__).resolve().parents[1]
LINE = b'{"url": "https://example.com/a", "score": 5, "id": "x", "subreddit": "s", "created_utc": 1}\n'


def big_window(frames, content_size=False) -> bytes:
    """zstd frames with a 2 GiB window, as Pushshift writes them (streamed: no content size in the header)."""
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=31, write_content_size=content_size)
    out = []
    for frame in frames:
        buf = io.BytesIO()
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
            for piece in frame:
                w.write(piece)
        out.append(buf.getvalue())
    return b"".join(out)


def children(pid: int):
    """Live (not zombie) processes whose parent is `pid` and that run the decompressing child."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and b"crawl.sources.unzstd" in cmdline:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_mb() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024


def growth(chunks) -> int:
    """How far this process's resident memory rose while the chunks were read (MB)."""
    base = peak = rss_mb()
    for _ in chunks:
        peak = max(peak, rss_mb())
    return peak - base


def outcome(chunks):
    out, error = [], None
    try:
        for chunk in chunks:
            out.append(chunk)
    except OSError as e:       # UnreadableInput, TruncatedInput, or what the source raised
        error = (type(e).__name__, getattr(e, "reason", None), str(e))
    return b"".join(out), error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_window_is_not_in_the_reading_process():
    # 128 MiB decompressed in one frame: the in-process decoder's window grows by that much, the child's does not
    piece = LINE * ((1 << 20) // len(LINE))
    blob = big_window([[piece] * 128])
    assert zstandard.get_frame_parameters(blob).window_size == 2 ** 31
    with_child = growth(dumps.iter_chunks(io.BytesIO(blob), "/dumps/RS_big.zst"))
    in_process = growth(reading._zstd_chunks(io.BytesIO(blob)))
    assert in_process > 100, in_process        # the window is real: what this test would see without the child
    assert with_child < 25, (with_child, in_process)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_pipeline_reader_decompresses_in_a_child_and_reaps_it():
    blob = big_window([[LINE * 20_000]] * 2)
    progress = []        # what the progress bar is told: compressed bytes read, as before
    batches = dumps.iter_fields(dumps.CountingReader(io.BytesIO(blob), progress.append), "/dumps/RS_small.zst")
    n = len(next(batches))
    seen = children(os.getpid())
    n += sum(len(b) for b in batches)
    assert n == 40_000 and sum(progress) == len(blob)
    assert len(seen) == 1
    assert children(os.getpid()) == [] and not alive(seen[0])


@lru_cache(maxsize=None)
def damaged_dumps():
    good = [[LINE * 30_000], [LINE * 10 + LINE[:20]], [LINE[20:] + LINE * 5]]
    frames = big_window(good)
    corrupt = big_window(good[:2]) + b"\x28\xb5\x2f\xfd" + b"\xff" * 64 + big_window(good[2:])
    return {"good": frames, "truncated": frames[:-7], "corrupt": corrupt,
            "corrupt in a frame": frames[:len(frames) - 30] + b"\x00" * 30 + big_window(good[:1]),
            "content size": big_window([[LINE * 200_000]], content_size=True), "empty": b"", "not zstd": b"x" * 9}


CASES = [(name, "child") for name in damaged_dumps()] + [
    (name, start) for name in ("good", "truncated", "corrupt") for start in ("no child can start", "not a Python")]


@pytest.mark.parametrize("name,start", CASES)
def test_same_chunks_and_same_damage_report_as_in_process(name, start, monkeypatch):
    blob = damaged_dumps()[name]
    expected = outcome(reading._zstd_chunks(io.BytesIO(blob)))
    if start != "child":     # the reader falls back to in-process decompression
        monkeypatch.setattr(sys, "executable", "/nonexistent/python" if start.startswith("no") else "/bin/echo")
    assert outcome(dumps.iter_chunks(io.BytesIO(blob), "/dumps/RS_x.zst")) == expected
    assert children(os.getpid()) == []


@pytest.mark.parametrize("damaged", [False, True])
def test_a_read_error_of_the_source_is_raised_as_in_process(damaged):
    # the source fails halfway; when a corrupt frame comes before that, the corrupt frame is what is reported,
    # although the feeder has read ahead of the child to the failure
    good = big_window([[os.urandom(1 << 20)], [LINE * 1000]])
    rest = b"\x28\xb5\x2f\xfd" + b"\xff" * 64 + os.urandom(1 << 20) if damaged else big_window([[os.urandom(1 << 20)]])
    blob = good + rest
    fail_at = len(good) + 1000

    class Failing(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > fail_at:
                raise OSError("the disk went away")
            return super().read(min(n, 4096))

    expected = outcome(reading._zstd_chunks(Failing(blob)))
    assert expected[1][0] == ("UnreadableInput" if damaged else "OSError") and expected[0]
    assert outcome(dumps.iter_chunks(Failing(blob), "/dumps/RS_x.zst")) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_silent_child_is_stopped_and_its_file_counted(monkeypatch):
    from crawl.sources import unzstd
    monkeypatch.setattr(unzstd, "STALL_S", 0.5)
    blob = big_window([[LINE * 300_000]])      # ~30 MB: more than the pipe holds
    batches = dumps.iter_fields(io.BytesIO(blob), "/dumps/RS_stall.zst")
    next(batches)
    child, = children(os.getpid())
    os.kill(child, signal.SIGSTOP)
    t = time.monotonic()
    with pytest.raises(reading.UnreadableInput) as e:
        for _ in batches:
            pass
    assert time.monotonic() - t < 10
    assert e.value.reason == "corrupt_file"
    assert "sent nothing for 0.5 s and was stopped; the rest of the file is skipped" in str(e.value)
    assert e.value.lines_before > 0
    assert not alive(child)


READER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from crawl.sources import unzstd
    chunks = unzstd.iter_chunks(open(sys.argv[2], "rb"), sys.argv[2])
    next(chunks)
    print("reading", flush=True)
    time.sleep(60)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_reader_leaves_no_child(tmp_path):
    dump = tmp_path / "RS_kill.zst"
    dump.write_bytes(big_window([[LINE * 300_000]]))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(ROOT), str(dump)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not children(reader.pid) and time.monotonic() < deadline and reader.poll() is None:
            time.sleep(0.05)
        found = children(reader.pid)
        assert len(found) == 1, reader.poll()
        reader.kill()
        reader.wait(timeout=10)
        deadline = time.monotonic() + 5
        while alive(found[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(found[0])
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(timeout=10)
