"""FetchPages on FnApiRunner: politeness measured at the server, counters that add up, WARC resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from crawl.fetch.config import FetchConfig
from crawl.fetch.transform import FetchPages, host_key
from crawl.fetch.warc import ReadWarcPages
from conftest import COLLECTED, collect, committed_outcomes, counters, link_for, run_fetch
from pipeline.demo.loopback import LoopbackWeb

def _page_html(url):
    return f"<!doctype html><html><body><p>Article at {url}.</p></body></html>"


def test_host_key_splits_giant_hosts_stably():
    links = [link_for(f"http://giant.example/{i}") for i in range(1000)]
    keys = [host_key(l, {"giant.example": 1000}, 300)[0] for l in links]
    assert set(keys) == {f"giant.example#{k}/4" for k in range(4)}
    assert max(keys.count(k) for k in set(keys)) < 330                # about 250 each
    assert keys == [host_key(l, {"giant.example": 1000}, 300)[0] for l in links]
    assert host_key(link_for("http://small.example/"), {"giant.example": 1000}, 300)[0] == "small.example#0/1"


@pytest.mark.parametrize("processes", [0, 1], ids=["in-worker", "fetch-process"])
def test_politeness_and_counters(processes):
    delay = 0.3
    with LoopbackWeb() as web:
        links = []
        for h in range(4):
            for i in range(4):
                url = f"http://site{h}.example/a{i}"
                web.add(url, _page_html(url))
                links.append(link_for(url))
        web.add_robots("site0.example", "User-agent: *\nDisallow: /a3\n")
        web.add_redirect("http://site1.example/a3", "https://en.wikipedia.org/wiki/Politeness")
        web.add("http://site2.example/a3", b"\x89PNG\r\n\x1a\n\0\0", content_type="image/png")
        links.append(link_for("http://site3.example/missing"))
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=delay, read_timeout=2, global_concurrency=8, processes=processes)
        t0 = time.monotonic()
        pages, drops, counters = run_fetch(links, cfg, f"polite{processes}")
        took = time.monotonic() - t0
        log = list(web.log)

    # Every link ends in exactly one named outcome, and the counters say the same.
    assert counters["fetch.in"] == len(links) == 17
    assert counters["fetch.out"] == len(pages) == 13
    assert counters["fetch.in"] == counters["fetch.out"] + sum(v for k, v in counters.items() if k.startswith("fetch.drop."))
    assert sorted((d.reason, d.url) for d in drops) == [
        ("http_4xx", "http://site3.example/missing"), ("not_html", "http://site2.example/a3"),
        ("robots_disallowed", "http://site0.example/a3"), ("wikipedia_after_redirect", "http://site1.example/a3")]
    assert all(d.stage == "fetch" for d in drops)
    assert {p.link.url: p.body for p in pages} == {l.url: _page_html(l.url).encode() for l in links
                                                   if l.url.endswith(("a0", "a1", "a2"))} | {
        "http://site3.example/a3": _page_html("http://site3.example/a3").encode()}

    # Politeness, measured at the server: one host's requests (robots.txt included) at least `delay` apart ...
    starts = defaultdict(list)
    for t, _, host, _ in log:
        starts[host].append(t)
    assert set(starts) == {f"site{h}.example" for h in range(4)}
    for host, ts in starts.items():
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert min(gaps) >= delay, (host, gaps)
    # ... while different hosts are fetched at the same time.
    assert max(ts[0] for ts in starts.values()) < min(ts[-1] for ts in starts.values())
    assert took < 4 * 5 * delay                                        # far below hosts one after another


@pytest.mark.parametrize("processes", [0, 1], ids=["in-worker", "fetch-process"])
def test_one_fetch_thread_takes_the_largest_host_group_waiting(processes):
    # One thread: the first host group it gets runs at once, the others wait; the biggest of those goes next, so the
    # 5-URL host is never fetched last (first in, first out would put it last when its key comes last).
    with LoopbackWeb() as web:
        links = []
        for host, n in (("one.example", 1), ("two.example", 1), ("big.example", 5), ("three.example", 1)):
            for i in range(n):
                url = f"http://{host}/a{i}"
                web.add(url, _page_html(url))
                links.append(link_for(url))
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.05, read_timeout=2, global_concurrency=1, processes=processes)
        pages, _, counters = run_fetch(links, cfg, f"largest{processes}")
        order = [host for _, _, host, path in web.log if path != "/robots.txt"]
    assert counters["fetch.out"] == len(pages) == 8
    first_host = order[0]
    waiting = [h for h in dict.fromkeys(order) if h != first_host]
    assert waiting[0] == "big.example" or first_host == "big.example", order


RESUME_SCRIPT = r"""
import json, sys
import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from core.records import Link
from crawl.fetch.config import FetchConfig
from crawl.fetch.transform import FetchPages
args = json.loads(sys.argv[1])
links = [Link(*l[:3], tuple(l[3]), *l[4:]) for l in args["links"]]
cfg = FetchConfig(**args["cfg"])
p = beam.Pipeline(runner=FnApiRunner())
_ = p | beam.Create(links) | FetchPages(cfg, quiet=True)
p.run().wait_until_finish()
"""


def test_warc_resume_after_kill(tmp_path):
    warc_dir = str(tmp_path / "warc")
    with LoopbackWeb() as web:
        links = []
        for h in range(3):
            for i in range(8):
                url = f"http://news{h}.example/story{i}"
                if i != 5:
                    web.add(url, _page_html(url))                    # story5 is a 404 everywhere
                links.append(link_for(url))
        cfg = dict(http_proxy=web.proxy_url, min_delay=0.15, read_timeout=2, warc_dir=warc_dir, warc_rotate=1)

        # Run 1 in a subprocess, killed (SIGKILL: no cleanup at all) after about half the pages were requested.
        proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT,
                                 json.dumps({"links": [list(l) for l in links], "cfg": cfg})],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while sum(1 for e in web.log if "story" in e[3]) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        decided = committed_outcomes(warc_dir)
        assert 0 < len(decided) < len(links)
        assert all(rec.outcome in ("ok", "http_4xx") for rec in decided.values())

        # Run 2: the same job. Only what run 1 did not commit goes to the network.
        n = len(web.log)
        pages, drops, counters = run_fetch(links, FetchConfig(**cfg), "resume")
        second = [f"http://{host}{path}" for _, _, host, path in web.log[n:] if "story" in path]

    # What run 1 committed is never fetched again. What it had written but not yet committed when it was killed is
    # recovered when run 2 starts (crawl/fetch/warc_recover.py) and reused too: every link is fetched once in all.
    assert len(second) == len(set(second)) and not set(second) & set(decided)
    assert counters["fetch.resumed"] == len(links) - len(second) >= len(decided)
    assert counters["fetch.in"] == 24 and counters["fetch.out"] == len(pages) == 21
    assert sorted((d.reason, d.url) for d in drops) == sorted(
        ("http_4xx", f"http://news{h}.example/story5") for h in range(3))
    # The final pages are those of an uninterrupted crawl ...
    assert {p.link.url: (p.final_url, p.status, p.content_type, p.body, p.encoding, p.link) for p in pages} == {
        l.url: (l.url, 200, "text/html", _page_html(l.url).encode(), "utf-8", l) for l in links if "story5" not in l.url}
    # ... and the WARC directory alone rebuilds them exactly, provenance included (what `extract --warc` uses).
    # Through Beam, with the outcome logs and from the WARC files alone.
    assert sorted(_read_warc(warc_dir, "warc")) == sorted(pages)
    for name in os.listdir(warc_dir):
        if name.startswith("outcomes-"):
            os.remove(os.path.join(warc_dir, name))
    assert sorted(_read_warc(warc_dir, "warc-only")) == sorted(pages)


def _read_warc(warc_dir, tag):
    COLLECTED.pop(tag, None)
    p = beam.Pipeline(runner=FnApiRunner())
    _ = (p | ReadWarcPages(warc_dir))["pages"] | beam.Map(collect, tag)
    p.run().wait_until_finish()
    return COLLECTED[tag]


def test_resume_retries_chosen_outcomes_and_refetches_lost_warcs(tmp_path):
    warc_dir = str(tmp_path / "warc")
    links = [link_for(f"http://retry.example/{name}") for name in ("a", "b", "flaky")]
    with LoopbackWeb() as web:
        for name in ("a", "b"):
            web.add(f"http://retry.example/{name}", _page_html(name))
        web.add("http://retry.example/flaky", "down", status=503)
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, max_retries=0, warc_dir=warc_dir)
        pages, drops, _ = run_fetch(links, cfg, "first")
        assert len(pages) == 2 and [d.reason for d in drops] == ["http_5xx"]

        # Rerun: replayed by default, fetched again when the config lists the outcome in resume_retry.
        web.add("http://retry.example/flaky", _page_html("flaky"))
        n = len(web.log)
        pages, drops, counters = run_fetch(links, cfg, "replay")
        assert len(web.log) == n and [d.reason for d in drops] == ["http_5xx"] and counters["fetch.resumed"] == 3
        pages, drops, counters = run_fetch(links, FetchConfig(**{**cfg.__dict__, "resume_retry": ("http_5xx",)}), "retry")
        assert [e[3] for e in web.log[n:] if e[3] != "/robots.txt"] == ["/flaky"]
        assert len(pages) == 3 and not drops and counters["fetch.resumed"] == 2
        assert committed_outcomes(warc_dir)["http://retry.example/flaky"].outcome == "ok"    # ok wins over the old 5xx

        # Lost WARC files: their pages are fetched again instead of being lost or failing the job.
        for name in os.listdir(warc_dir):
            if name.startswith("fetch-"):
                os.remove(os.path.join(warc_dir, name))
        n = len(web.log)
        pages, drops, counters = run_fetch(links, cfg, "lost")
        assert counters["fetch.warc_unreadable"] == 3
        assert sorted(e[3] for e in web.log[n:] if e[3] != "/robots.txt") == ["/a", "/b", "/flaky"]
        assert len(pages) == 3 and not drops
        assert counters["fetch.in"] == 3 == counters["fetch.out"]


@pytest.mark.parametrize("processes", [0, 1], ids=["in-worker", "fetch-process"])
def test_split_host_gets_one_request_per_delay_in_total(processes):
    """A giant host split into keys that share a worker: about one request per delay overall (N x delay), not
    each key waiting n_keys x the delay on the host's shared pacer as well (N x n_keys x delay)."""
    delay, n = 0.15, 12
    with LoopbackWeb() as web:
        links = []
        for i in range(n):
            url = f"http://giant.example/p{i}"
            web.add(url, _page_html(url))
            links.append(link_for(url))
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=delay, read_timeout=2, robots=False,
                          max_urls_per_host_key=4, global_concurrency=8, processes=processes)
        pages, drops, counters = run_fetch(links, cfg, f"split{processes}")
        log = [(t, path) for t, _, host, path in web.log if host == "giant.example"]
    assert len(pages) == n and not drops
    keys = {l.url.rsplit("/", 1)[1]: host_key(l, {"giant.example": n}, 4)[0] for l in links}
    assert len(set(keys.values())) == 3
    starts = sorted(t for t, _ in log)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= delay * 0.95, gaps                     # never two requests to the host within a delay
    for key in set(keys.values()):          # each key alone: (host URLs / key URLs) x the delay per request
        ts = sorted(t for t, path in log if keys[path.strip("/")] == key)
        assert ts[-1] - ts[0] >= (len(ts) - 1) * n / len(ts) * delay * 0.9 - delay
    # ~ (n - 1) x delay = 1.65 s when the keys interleave; n_keys-fold slower (~4.95 s) when they do not.
    assert starts[-1] - starts[0] < 0.6 * (n - 1) * 3 * delay


@pytest.mark.parametrize("processes", [0, 1], ids=["in-worker", "fetch-process"])
def test_redirect_targets_are_paced_across_workers(processes):
    """A shortener split over keys on two worker processes, every link redirecting to one target host that has
    links of its own: the target still sees one request per delay, because the redirected chains are fetched
    under the target host's key (measured at the server, which lives in this process)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    delay = 0.3
    with LoopbackWeb() as web:
        links = []
        for i in range(8):
            web.add_redirect(f"http://short.example/{i}", f"http://target.example/r{i}")
            web.add(f"http://target.example/r{i}", _page_html(i))
            links.append(link_for(f"http://short.example/{i}"))
        for i in range(3):
            web.add(f"http://target.example/own{i}", _page_html(i))
            links.append(link_for(f"http://target.example/own{i}"))
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=delay, read_timeout=2, robots=False,
                          max_urls_per_host_key=2, global_concurrency=8, redirect_rounds=2, processes=processes)
        opts = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
        p = beam.Pipeline(runner=FnApiRunner(), options=opts)
        _ = p | beam.Create(links) | FetchPages(cfg, quiet=True)
        result = p.run()
        result.wait_until_finish()
        log = list(web.log)
    counted = counters(result)         # each link counted in once, out once, whichever round ended it
    assert counted["fetch.in"] == counted["fetch.out"] == 11
    target = sorted(t for t, _, host, _ in log if host == "target.example")
    assert len(target) == 11
    gaps = [b - a for a, b in zip(target, target[1:])]
    assert min(gaps) >= delay * 0.95, gaps
