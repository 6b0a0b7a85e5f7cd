"""WARC capture that survives a kill: commits on a timer, leftovers of a killed writer recovered whole by the next
run (never a live writer's), and a real capturing pipeline SIGKILLed mid-crawl that the rerun barely refetches."""
import json
import os
import signal
import subprocess
import sys
import time

from core.records import Link, Page
from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import FetchResult
from crawl.fetch.warc import WarcSink, response_pages
from crawl.fetch.warc_recover import recover_leftovers
from conftest import committed_outcomes
from pipeline.demo.loopback import LoopbackWeb
from conftest import link_for, run_fetch
from test_fetch_beam import RESUME_SCRIPT, _page_html

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def page(i, size=3000):
    url = f"http://cap.example/{i}"
    body = (f"<html><body><p>page {i} " + "x" * size + "</p></body></html>").encode()
    return Page(Link(url, "cap.example", 5, ("s",), 1_400_000_000, 1), url, 200, "text/html", body, "utf-8", 1e9)


def temp_files(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".tmp"))


def test_commits_on_a_timer_without_close(tmp_path):
    sink = WarcSink(str(tmp_path), commit_seconds=0.3)
    sink.add(page(0).link, FetchResult("ok", page(0)))
    deadline = time.monotonic() + 5
    while not committed_outcomes(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(committed_outcomes(str(tmp_path))) == [page(0).link.url]
    assert not temp_files(tmp_path)
    sink.add(page(1).link, FetchResult("ok", page(1)))      # the sink goes on after a timed commit
    sink.close()
    assert sorted(committed_outcomes(str(tmp_path))) == [page(0).link.url, page(1).link.url]


KILLED_WRITER = r"""
import os, signal, sys
from core.records import Link, Page
from crawl.fetch.fetcher import FetchResult
from crawl.fetch.warc import WarcSink
sink = WarcSink(sys.argv[1], commit_seconds=0)
for i in range(10):
    url = f"http://cap.example/{i}"
    body = (f"<html><body><p>page {i} " + "x" * 3000 + "</p></body></html>").encode()
    p = Page(Link(url, "cap.example", 5, ("s",), 1_400_000_000, 1), url, 200, "text/html", body, "utf-8", 1e9)
    sink.add(p.link, FetchResult("ok" if i != 4 else "http_4xx", p if i != 4 else None))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_leftovers_of_a_killed_writer_are_recovered_whole(tmp_path):
    d = str(tmp_path)
    subprocess.run([sys.executable, "-c", KILLED_WRITER, d], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    tmps = temp_files(d)
    assert len(tmps) == 2 and not committed_outcomes(d)
    # Tear both the way a death mid-write would: the last record loses its end, the last line too.
    warc_tmp = os.path.join(d, next(n for n in tmps if n.startswith(".fetch-")))
    out_tmp = os.path.join(d, next(n for n in tmps if n.startswith(".outcomes-")))
    os.truncate(warc_tmp, os.path.getsize(warc_tmp) - 700)      # into the response record of page 9
    with open(out_tmp, "ab") as f:
        f.write(b'{"url": "http://cap.example/torn", "outc')

    # A live writer's temp files in the same folder are left alone.
    live = WarcSink(d, commit_seconds=0)
    live.add(page(99).link, FetchResult("ok", page(99)))
    done = recover_leftovers(d)
    assert done == {"pairs": 1, "lines": 9, "removed": 0}
    assert len(temp_files(d)) == 2                               # the live pair only
    got = committed_outcomes(d)
    assert sorted(got) == sorted(f"http://cap.example/{i}" for i in range(9))
    assert got["http://cap.example/4"].outcome == "http_4xx"
    warcs = [os.path.join(d, n) for n in os.listdir(d) if n.startswith("fetch-")]
    assert len(warcs) == 1
    pages = list(response_pages(warcs[0]))                       # whole: no torn record left in a committed file
    assert sorted(p.link.url for p in pages) == sorted(f"http://cap.example/{i}" for i in range(9) if i != 4)
    assert recover_leftovers(d) == {"pairs": 0, "lines": 0, "removed": 0}
    live.close()
    assert not temp_files(d) and "http://cap.example/99" in committed_outcomes(d)


def test_sigkill_mid_crawl_rerun_refetches_only_what_was_in_flight(tmp_path):
    warc_dir = str(tmp_path / "warc")
    hosts, per_host = 4, 60
    with LoopbackWeb() as web:
        links = []
        for h in range(hosts):
            for i in range(per_host):
                url = f"http://cap{h}.example/p{i}"
                web.add(url, _page_html(url))
                links.append(link_for(url))
        cfg = dict(http_proxy=web.proxy_url, min_delay=0.2, read_timeout=2, warc_dir=warc_dir)  # rotate: 1000
        proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT,
                                 json.dumps({"links": [list(link) for link in links], "cfg": cfg})],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, first = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            n = sum(1 for e in web.log if "/p" in e[3])
            if n and first is None:
                first = time.monotonic()
            if first is not None and time.monotonic() - first > 6.5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run1 = {f"http://{host}{path}" for _, _, host, path in web.log if "/p" in path}
        committed_by_timer = committed_outcomes(warc_dir)
        assert 20 < len(run1) < len(links), len(run1)
        # The timer committed while the crawl ran (every 5 s): the first seconds are on disk already.
        assert len(committed_by_timer) >= 10, len(committed_by_timer)

        n = len(web.log)
        pages, drops, counters = run_fetch(links, FetchConfig(**cfg), "killed")
        run2 = [f"http://{host}{path}" for _, _, host, path in web.log[n:] if "/p" in path]
    again = run1 & set(run2)
    print(f"killed after {len(run1)} requests, {len(committed_by_timer)} committed by the timer; rerun fetched "
          f"{len(run2)}, {len(again)} of them again")
    assert len(again) <= hosts, sorted(again)            # at most the request in flight on each host
    assert sorted(run2) == sorted(set(run2))
    assert not temp_files(warc_dir)
    assert counters["fetch.in"] == len(links) == counters["fetch.out"] == len(pages)
    assert counters["fetch.resumed"] == len(links) - len(run2)
