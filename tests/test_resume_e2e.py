"""Kill a crawl midway, rerun it: the rerun fetches only what the first run had not committed, and the final
shards are byte-identical to an uninterrupted run's."""
import hashlib
import os
import signal
import subprocess
import sys
import time

from conftest import committed_outcomes
from webtext import main
from pipeline.demo.web import build_demo


def digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("data/*.arrow"))}


def args(dump, out, proxy, *extra):
    return ["run", "--input", str(dump), "--out", str(out), "--http-proxy", proxy, "--quiet",
            "--set", "fetch.min_delay=0.25", "--set", "fetch.warc_rotate=3", "--set", "shards.target_tokens=8000",
            *extra]


def fetched_pages(log):
    return {f"http://{host}{path}" for _, _, host, path in log if not path.startswith("/robots.txt")}


def test_kill_and_resume(tmp_path):
    demo = build_demo(tmp_path / "web")
    warc = tmp_path / "warc"
    with demo.web as web:
        proxy = web.proxy_url
        first = subprocess.Popen([sys.executable, "-m", "webtext",
                                  *args(demo.dump_path, tmp_path / "killed", proxy, "--warc-dir", str(warc))],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and len(list(warc.glob("outcomes-*.jsonl"))) < 3:
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)     # the run and its extraction workers, mid-crawl
        first.wait()
        committed = committed_outcomes(str(warc))
        assert 0 < len(committed), "the first run committed nothing before it was killed"
        assert not (tmp_path / "killed" / "manifest.json").exists(), "the first run finished before the kill"

        mark = len(web.log)
        assert main(args(demo.dump_path, tmp_path / "resumed", proxy, "--warc-dir", str(warc))) == 0
        refetched = fetched_pages(web.log[mark:])
        assert refetched, "the rerun fetched nothing"
        assert not refetched & set(committed), "the rerun fetched URLs the first run had committed"

        assert main(args(demo.dump_path, tmp_path / "clean", proxy)) == 0
    assert digests(tmp_path / "resumed") == digests(tmp_path / "clean") != {}
