"""`webtext plan`: what a crawl of these dumps will cost, before anything is fetched.

    webtext plan --input RS_*.zst [--config FILE.toml] [--set SECTION.KEY=VALUE] [--top N] [--workers N]

It runs the real link stage (crawl/sources + crawl/links: the same HarvestLinks as `webtext run`, with the same
config) on the local runner, counts the links per host, and prints the links, the distinct hosts, the largest
hosts, and the crawl's lower bound in time at the configured politeness and concurrency:

    bound = max(largest host's URLs x fetch.min_delay,
                links x fetch.min_delay / (fetch.global_concurrency x workers))

The first term: a host gets one request per min_delay, whatever the split of a giant host into keys (one request
per delay for the host) or the number of workers. The second: each fetch thread handles one host at a time and
waits min_delay before each of its requests, so all threads together start at most global_concurrency x workers
requests per min_delay. Response times, robots.txt fetches, a robots Crawl-delay above min_delay (honoured up to
fetch.max_crawl_delay) and retries only add to it. Nothing is written; no network is used.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import sys
import tempfile
from typing import List, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from core.records import DROPPED, LINKS, SOURCE, SUBMISSIONS
from core.settings import ArgumentParser, UsageError
from crawl.links import HarvestLinks

LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "PrismRunner")
HELP = __doc__.split("\n\n", 2)[2].strip()


def count_hosts(cfg, options) -> Tuple[List[Tuple[str, int]], dict]:
    """[(host, links)] largest first, and the link stage's per-stage stats, from one run of the link stage."""
    from pipeline.stats import counters_from_result, stage_stats

    with tempfile.TemporaryDirectory(prefix="webtext-plan-") as tmp:
        p = beam.Pipeline(options=options)
        links = p | "HarvestLinks" >> HarvestLinks(cfg.links, dumps=cfg.run.inputs, max_line=cfg.run.max_line,
                                                   examples=0, quiet=cfg.run.quiet)
        _ = links[DROPPED]   # counted (Beam metrics) where they are decided; no example is kept
        _ = (links["links"]
             | "Host" >> beam.Map(lambda link: link.host)
             | "LinksPerHost" >> beam.combiners.Count.PerElement()
             | "AsJson" >> beam.Map(json.dumps)
             | "WriteHosts" >> beam.io.WriteToText(os.path.join(tmp, "hosts"), file_name_suffix=".jsonl"))
        result = p.run()
        result.wait_until_finish()
        hosts = []
        for path in glob.glob(os.path.join(tmp, "hosts*.jsonl")):
            with open(path, encoding="utf-8") as f:
                hosts += [tuple(json.loads(line)) for line in f]
    hosts.sort(key=lambda kv: (-kv[1], kv[0]))
    return hosts, stage_stats(counters_from_result(result), (SOURCE, SUBMISSIONS, LINKS))


def duration(seconds: float) -> str:
    """'3d 4h', '2h 05m', '7m 12s', '41 s'."""
    s = int(round(seconds))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{seconds:.0f} s"


def bound(hosts: List[Tuple[str, int]], min_delay: float, concurrency: int, workers: int) -> Tuple[float, float]:
    """(largest host's URLs x min_delay, links x min_delay / (concurrency x workers)): the bound is their max."""
    largest = hosts[0][1] if hosts else 0
    total = sum(n for _, n in hosts)
    return largest * min_delay, total * min_delay / (concurrency * workers)


def report(hosts, stats: dict, fetch, workers: int, top: int) -> str:
    total, d, c = sum(n for _, n in hosts), fetch.min_delay, fetch.global_concurrency
    by_host, by_all = bound(hosts, d, c, workers)
    source = stats.get(SOURCE, {})
    lines = [f"plan: {source.get('in', 0):,} dump lines -> {total:,} links on {len(hosts):,} distinct hosts"]
    lines += [f"  link stage drops: " + (", ".join(f"{r} {n:,}" for s in stats.values()
                                                  for r, n in sorted(s["dropped"].items())) or "none")]
    if hosts:
        width = max(len(h) for h, _ in hosts[:top])
        lines += ["", f"largest {min(top, len(hosts))} hosts (links, share of links, time alone at "
                      f"fetch.min_delay = {d:g} s):"]
        lines += [f"  {h:<{width}}  {n:>12,}  {100 * n / total:5.1f}%  {duration(n * d):>8}" for h, n in hosts[:top]]
    lines += ["", f"crawl lower bound: {duration(max(by_host, by_all))}",
              f"  = max(largest host: {hosts[0][1] if hosts else 0:,} links x fetch.min_delay {d:g} s = "
              f"{duration(by_host)},",
              f"        all links: {total:,} x fetch.min_delay {d:g} s / (fetch.global_concurrency {c} x {workers} "
              f"worker{'s' if workers != 1 else ''}) = {duration(by_all)})",
              "  response times, robots.txt, a Crawl-delay above min_delay (up to fetch.max_crawl_delay) and retries "
              "only add to it"]
    if by_host > by_all and hosts:
        lines.append("  the largest host decides it: more workers or threads do not shorten it; "
                     "links.blocked_domains or a lower fetch.min_delay (ask the site) would")
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    from pipeline.options import config_from, parse
    from pipeline.runner import check_inputs

    ours = ArgumentParser(prog="webtext plan", add_help=False, allow_abbrev=False)   # a mistake: one line
    ours.add_argument("--top", type=int, default=10)
    ours.add_argument("--workers", type=int, default=1)
    if "-h" in argv or "--help" in argv:
        print("usage: webtext plan --input FILE... [--config FILE.toml] [--set SECTION.KEY=VALUE] [--top N] "
              "[--workers N]\n\n" + HELP + "\n\n--top N: largest hosts shown (default 10); --workers N: Beam "
              "workers that fetch at once (default 1: the local runner)")
        return 0
    args, rest = ours.parse_known_args(argv)
    if args.top < 1 or args.workers < 1:
        raise UsageError("--top and --workers must be at least 1")
    options, flags = parse(rest)
    runner = str(options.view_as(StandardOptions).runner).rsplit(".", 1)[-1]
    if runner not in LOCAL_RUNNERS:   # the host counts come back through a local temporary folder
        raise UsageError(f"webtext plan runs on the local runner ({', '.join(LOCAL_RUNNERS)}), not {runner}")
    cfg = config_from(flags)
    if cfg.reddit is not None:
        raise UsageError("webtext plan reads dumps and URL lists (--input); a live harvest (--reddit) has no plan")
    check_inputs(cfg)
    hosts, stats = count_hosts(cfg, options)
    print(report(hosts, stats, cfg.fetch, args.workers, args.top))
    print(f"\nnext: webtext run {shlex.join(rest)}{'' if flags.out else ' --out DIR'}")
    sys.stdout.flush()
    return 0
