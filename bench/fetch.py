"""Fetch throughput against a loopback web: N hosts x P pages with injected server latency, through FetchPages on
FnApiRunner, next to the politeness bound and a measured single-host baseline.

    python bench/fetch.py [--hosts 50] [--pages 20] [--delay 1.0] [--latency 0.02] [--concurrency 64]
                          [--giant 60] [--keys 4] [--giant-delay 0.1]

Politeness fixes the best possible time: a host's P pages plus its robots.txt are P+1 requests, P gaps of `delay`
each, so no crawler obeying the delay can finish in less than P * delay (ideal, from the config). The baseline is
the same host fetched alone with the plain function (fetch_host), measured here: the floor with our per-request
costs (latency, connection setup) included. Achieved is the whole Beam job for N hosts, start to finish.

Then a giant host (`--giant` URLs) split into `--keys` host keys, against the same host fetched as one key in the
same run: politeness allows one request per delay to the host in total, so both should take ~giant x delay
(split/unsplit ~1.0); a split that slowed each key n_keys-fold would read ~n_keys.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from collections import defaultdict

# Run as a script, bench/ is sys.path[0], and bench/pipeline.py would shadow the pipeline package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import apache_beam as beam  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import fetch_host, make_session
from crawl.fetch.transform import FetchPages
from core.records import Link
from pipeline.demo.loopback import LoopbackWeb


def serve_with_latency(web: LoopbackWeb, latency: float):
    def handler(h, url):
        time.sleep(latency)
        body = (f"<!doctype html><html><head><title>{url.path}</title></head><body><p>Page {url.geturl()} "
                + "lorem ipsum " * 300 + "</p></body></html>").encode()
        h.send_response(200)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return handler


def _beam_fetch(links, cfg):
    t0 = time.perf_counter()
    p = beam.Pipeline(runner=FnApiRunner())
    _ = p | beam.Create(links) | FetchPages(cfg, quiet=True)
    result = p.run()
    result.wait_until_finish()
    return time.perf_counter() - t0, result


def giant_host(web: LoopbackWeb, args) -> list:
    """One host split into --keys keys vs the same host as one key: wall time and the host's smallest gap."""
    for name in ("giant-split", "giant-whole"):
        web.add_handler(f"http://{name}.example/page", serve_with_latency(web, args.latency))
    rows = {}
    for name, per_key in (("giant-whole", args.giant), ("giant-split", -(-args.giant // args.keys))):
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=args.giant_delay, robots=False,
                          global_concurrency=args.concurrency, max_urls_per_host_key=per_key)
        links = [Link(f"http://{name}.example/page/{i}", f"{name}.example", 3, (), 0) for i in range(args.giant)]
        n_log = len(web.log)
        took, _ = _beam_fetch(links, cfg)
        ts = sorted(t for t, _, host, _ in web.log[n_log:] if host == f"{name}.example")
        rows[name] = (took, ts[-1] - ts[0], min(b - a for a, b in zip(ts, ts[1:])), len(ts))
    ideal = (args.giant - 1) * args.giant_delay
    lines = [f"giant host: {args.giant} URLs, delay {args.giant_delay}s, ideal first-to-last {ideal:.2f}s"]
    for name, (took, span, gap, n) in rows.items():
        lines.append(f"  {name}: {n} requests, first-to-last {span:.2f}s, wall {took:.2f}s, min gap {gap:.3f}s")
    lines.append(f"  split ({args.keys} keys) / unsplit (1 key), first-to-last = "
                 f"{rows['giant-split'][1] / rows['giant-whole'][1]:.3f}   (n_keys-fold slowdown would be ~{args.keys})")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--giant", type=int, default=60, help="URLs of the split giant host (0: skip)")
    ap.add_argument("--keys", type=int, default=4, help="host keys the giant host is split into")
    ap.add_argument("--giant-delay", type=float, default=0.1)
    ap.add_argument("--proxy-dns-only", action="store_true",
                    help="fetch.proxy_dns_only: no local lookup behind the proxy (the loopback web's names do not "
                         "resolve; where the local resolver stalls on them, each lookup costs up to dns_timeout/2)")
    args = ap.parse_args()

    with LoopbackWeb() as web:
        for h in range(args.hosts + 1):
            web.add_handler(f"http://host{h}.example/page", serve_with_latency(web, args.latency))
            web.add_robots(f"host{h}.example", "User-agent: *\nAllow: /\n")
        cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=args.delay, global_concurrency=args.concurrency,
                          proxy_dns_only=args.proxy_dns_only)
        links = [Link(f"http://host{h}.example/page/{i}", f"host{h}.example", 3, (), 0)
                 for h in range(args.hosts) for i in range(args.pages)]

        # Baseline: one host alone, plain function, same config (host number N is not part of the Beam run).
        base_links = [Link(f"http://host{args.hosts}.example/page/{i}", f"host{args.hosts}.example", 3, (), 0)
                      for i in range(args.pages)]
        t0 = time.perf_counter()
        base_ok = sum(r.outcome == "ok" for _, r in fetch_host(base_links, cfg, session=make_session(cfg)))
        baseline = time.perf_counter() - t0

        n_log = len(web.log)
        achieved, result = _beam_fetch(links, cfg)
        log = web.log[n_log:]
        giant = giant_host(web, args) if args.giant else []

    counters = defaultdict(int)
    for c in result.metrics().query()["counters"]:
        counters[c.key.metric.name] += c.committed
    starts = defaultdict(list)
    for t, _, host, _ in log:
        starts[host].append(t)
    min_gap = min(b - a for ts in starts.values() for a, b in zip(ts, ts[1:]))
    first, last = min(t for t, *_ in log), max(t for t, *_ in log)

    pages = counters["fetch.out"]
    ideal = args.pages * args.delay
    print(f"hosts={args.hosts} pages/host={args.pages} delay={args.delay}s latency={args.latency}s "
          f"global_concurrency={args.concurrency}")
    print(f"ok pages: {pages}/{len(links)} (baseline host {base_ok}/{args.pages}); requests incl. robots.txt: {len(log)}")
    print(f"min gap between requests to one host: {min_gap:.3f}s (delay {args.delay}s)")
    print(f"ideal (politeness bound, from config): {ideal:.2f}s  -> {len(links) / ideal:.1f} pages/s")
    print(f"baseline (one host alone, measured):   {baseline:.2f}s  -> {args.hosts * args.pages / baseline:.1f} pages/s "
          f"if {args.hosts} hosts ran perfectly in parallel")
    print(f"achieved (Beam FetchPages, wall):      {achieved:.2f}s  -> {pages / achieved:.1f} pages/s")
    print(f"achieved (first to last request):      {last - first:.2f}s")
    print(f"achieved/ideal = {ideal / achieved:.3f}   achieved/baseline = {baseline / achieved:.3f}")
    drops = {k: v for k, v in counters.items() if k.startswith("fetch.drop.")}
    print(f"drops: {drops or 0}")
    print("\n".join(giant))


if __name__ == "__main__":
    main()
