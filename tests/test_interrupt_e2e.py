"""Ctrl-C during a real `python -m webtext run` against the loopback demo web: exit 130 with one line, at once, no
process left behind; a rerun into the same --out (no --overwrite) finishes with the shards of a clean run."""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

from pipeline.demo.web import build_demo
from webtext import main


def digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("data/*.arrow"))}


def args(dump, out, proxy, *extra):
    return ["run", "--input", str(dump), "--out", str(out), "--http-proxy", proxy, "--quiet",
            "--set", "fetch.min_delay=0.25", "--set", "fetch.warc_rotate=3", "--set", "shards.target_tokens=8000",
            "--set", "extract.processes=2", *extra]


def start(argv):
    # its own process group, as a terminal gives a foreground job: Ctrl-C goes to every process in it
    return subprocess.Popen([sys.executable, "-m", "webtext", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def group_gone(pgid, within):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def interrupt(proc):
    """Ctrl-C as a terminal sends it (to the whole group); (exit code, stderr, seconds to exit)."""
    sent = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err, time.time() - sent
    return proc.returncode, err, time.time() - sent


def test_ctrl_c_mid_crawl_exits_130_with_one_line(tmp_path):
    demo = build_demo(tmp_path / "web")
    warc = tmp_path / "warc"
    with demo.web as web:
        proc = start(args(demo.dump_path, tmp_path / "out", web.proxy_url, "--warc-dir", str(warc)))
        deadline = time.time() + 120
        while time.time() < deadline and len(list(warc.glob("outcomes-*.jsonl"))) < 2 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        code, err, seconds = interrupt(proc)
        print(f"Ctrl-C to exit: {seconds:.2f} s, exit code {code}")
        assert code == 130, err[-3000:]
        assert seconds < 3.0, f"took {seconds:.1f} s to exit"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err[-3000:]
        assert group_gone(proc.pid, 3.0), "extraction workers or other children outlived the run"
        assert not (tmp_path / "out" / "manifest.json").exists()


def test_sigint_at_a_random_point_then_rerun_gives_the_clean_shards(tmp_path):
    seed = int(os.environ.get("WEBTEXT_TEST_SEED", time.time_ns() % 10_000))
    when = random.Random(seed).uniform(0.5, 6.0)
    print(f"SIGINT after {when:.2f} s (WEBTEXT_TEST_SEED={seed} repeats it)")
    demo = build_demo(tmp_path / "web")
    warc, out = tmp_path / "warc", tmp_path / "out"
    with demo.web as web:
        proc = start(args(demo.dump_path, out, web.proxy_url, "--warc-dir", str(warc)))
        time.sleep(when)
        if proc.poll() is None:
            code, err, seconds = interrupt(proc)
            assert code == 130 and seconds < 3.0 and len(err.strip().splitlines()) == 1, (code, seconds, err[-2000:])
        assert group_gone(proc.pid, 3.0)
        # the same job into the same directory: no --overwrite needed, leftovers removed
        assert main(args(demo.dump_path, out, web.proxy_url, "--warc-dir", str(warc))) == 0
        assert main(args(demo.dump_path, tmp_path / "clean", web.proxy_url)) == 0
    assert digests(out) == digests(tmp_path / "clean") != {}
    assert not [p for p in out.rglob("*") if p.name.startswith("beam-temp-") or p.name.endswith(".tmp")]
