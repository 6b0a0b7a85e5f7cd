"""What a cluster does to DoFns and a laptop does not: a failed bundle's instance is torn down and the bundle is
retried on a fresh instance (elsewhere); healthy instances are reused for bundle after bundle.

The runner's steps are driven by hand here (setup, start_bundle, process, finish_bundle, teardown), in the order
Beam's SDK harness calls them, because no local runner retries a bundle of a portable pipeline."""
import time

from crawl.text.extract import ExtractConfig
from crawl.text.transform import _ExtractBatch
from crawl.fetch.config import FetchConfig
from core.gather import chunk
from crawl.fetch.transform import _FetchHosts, packed_link
from crawl.links import LinkRules
from core.records import Document, Link, Page
from pipeline.demo.loopback import LoopbackWeb

DELAY = 0.25


def _links(web, host, n):
    links = []
    for i in range(n):
        url = f"http://{host}/story{i}"
        web.add(url, f"<html><body><p>Story {i} on {host}.</p></body></html>")
        links.append(Link(url, host, 5, ("science",), 1_400_000_000, 1))
    return links


def _group(key, links):
    """A host group as the fetch's GroupByHost hands it over: the links packed and gathered into chunks."""
    return key, [chunk(b"".join(packed_link((key, link))[1] for link in links))]


def _bundle(dofn, elements, **side_inputs):
    """One whole bundle on `dofn`: what process() and finish_bundle() emitted, unwrapped."""
    dofn.start_bundle()
    out = [o for e in elements for o in dofn.process(e, **side_inputs)]
    out += [getattr(o, "value", o) for o in dofn.finish_bundle() or ()]
    return [getattr(o, "value", o) for o in out]


def _requests(web, host):
    return [t for t, _, h, _ in list(web.log) if h == host]


def test_failed_fetch_bundle_retried_on_a_fresh_instance_keeps_politeness():
    with LoopbackWeb() as web:
        links = _links(web, "slow.example", 8)
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=DELAY, robots=False, read_timeout=2)
        group = _group("slow.example#0/1", links)

        first = _FetchHosts(cfg, LinkRules(), quiet=True)
        first.setup()
        first.start_bundle()
        list(first.process(group, giants={}))          # the host's thread starts fetching ...
        time.sleep(2.2 * DELAY)             # ... a few pages, then the bundle fails:
        first.teardown()                    # the harness discards the instance
        before = len(_requests(web, "slow.example"))
        assert 1 <= before < len(links)
        time.sleep(3 * DELAY)
        assert len(_requests(web, "slow.example")) == before   # the discarded instance fetches nothing more

        retry = _FetchHosts(cfg, LinkRules(), quiet=True)
        retry.setup()
        pages = _bundle(retry, [group], giants={})
        retry.teardown()
        starts = _requests(web, "slow.example")

    # the retry decides every link once (its output is the only one the runner keeps) ...
    assert sorted(p.link.url for p in pages) == sorted(l.url for l in links)
    # ... and the host never saw two requests closer than the delay, across the two instances
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == before + len(links) and min(gaps) >= DELAY, gaps


def test_fetch_instance_reused_for_bundle_after_bundle():
    with LoopbackWeb() as web:
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.01, robots=False, read_timeout=2)
        dofn = _FetchHosts(cfg, LinkRules(), quiet=True)
        dofn.setup()
        for b in range(3):   # one instance, one thread pool, three bundles: nothing leaks from one to the next
            links = _links(web, f"h{b}.example", 3) + _links(web, f"g{b}.example", 2)
            groups = [_group(f"h{b}.example#0/1", links[:3]), _group(f"g{b}.example#0/1", links[3:])]
            pages = _bundle(dofn, groups, giants={})
            assert sorted(p.link.url for p in pages) == sorted(l.url for l in links)
        dofn.teardown()


def _page(i):
    url = f"http://site.example/p{i}"
    text = " ".join(f"Sentence number {j} of page {i} says something plain and English about the weather."
                    for j in range(12))
    body = f"<html><head><title>P{i}</title></head><body><article><p>{text}</p></article></body></html>"
    return Page(Link(url, "site.example", 5, ("science",), 1_400_000_000, 1), url, 200,
                "text/html; charset=utf-8", body.encode(), "utf-8")


def test_extraction_process_pool_survives_teardown_and_setup_again():
    """An extraction instance torn down (failed bundle, or the worker scaling down) and a new one set up in
    the same worker process: the new pool starts and extracts the same documents."""
    pages = [_page(i) for i in range(4)]
    results = []
    for _ in range(2):
        dofn = _ExtractBatch(ExtractConfig(processes=1, timeout=20), LinkRules(), quiet=True)
        dofn.setup()
        dofn.start_bundle()
        out = [o for o in dofn.process(pages)] + [v.value for v in dofn.finish_bundle()]
        dofn.teardown()
        results.append(sorted((d.url, d.text) for d in out if isinstance(d, Document)))
    assert results[0] == results[1] and len(results[0]) == 4
