"""Whole-pipeline throughput on the 206 real pages of ../shared/corpus/pages, served from loopback.

Measured in one run, each in a fresh process (so peak RSS is its own):
  floor      trafilatura + MinHash signature + tiktoken over the same pages in one plain loop (no Beam, no HTTP)
  beam x1    `webtext run` on FnApiRunner fetching through the loopback proxy (no politeness delay, no robots.txt),
             extraction on 1 worker process (extract.processes=1)
  beam x2    the same with 2 extraction processes (extract.processes=2): how one local Beam worker uses 2 cores
Prints pages/s, wall time, peak RSS, and the ratios the spine issue sets goals for:
  per-core efficiency = (beam pages/s / workers) / floor pages/s        (goal >= 0.85)
  speed-up with 2 workers = floor wall / beam x2 wall                     (goal >= 1.5)

    python bench/pipeline.py [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the `pipeline` package; keep its folder off the import path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
PAGES = ROOT.parent / "shared" / "corpus" / "pages"


def page_set():
    """[(http url, html bytes)] for every page; `hard::name` entries get a host made from the file name."""
    expectations = json.loads((PAGES / "expectations.json").read_text())
    out = []
    for name, e in sorted(expectations.items()):
        url = e["url"]
        if not url.startswith("http"):
            url = f"http://{name.removesuffix('.html')}.example/"
        url = "http://" + url.split("://", 1)[1]     # the loopback proxy speaks plain HTTP
        out.append((url, (PAGES / name).read_bytes()))
    return out


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def child_floor(repeat: int) -> dict:
    from crawl.text.extract import extract_text
    from dedup import signature
    from core.tokenizer import encode_document, get_encoding

    pages = page_set() * repeat
    get_encoding()
    extract_text(pages[0][1], pages[0][0])   # imports and lazy init outside the timing, as the pipeline's setup
    start = time.perf_counter()
    docs = 0
    for url, html in pages:
        text = extract_text(html, url)
        if text:
            signature(text)
            encode_document(text)
            docs += 1
    wall = time.perf_counter() - start
    return {"pages": len(pages), "docs": docs, "wall": wall, "rss_mb": peak_rss_mb()}


def child_beam(repeat: int, workers: int, proxy: str, dump: str, out: str) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions

    import dedup  # noqa: F401  imports outside the timing, as for the floor
    import pipeline.build  # noqa: F401
    from pipeline.config import load_config
    from pipeline.runner import run

    cfg = load_config(None, {"run": {"inputs": [dump], "quiet": True, "write_drops": False},
                             "fetch": {"http_proxy": proxy, "min_delay": 0.0, "robots": False},
                             "extract": {"processes": workers}, "shards": {"target_tokens": 2**27}})
    args = ["--runner=FnApiRunner"]
    start = time.perf_counter()
    stats = run(cfg, out, PipelineOptions(args), echo=lambda *a: None)
    wall = time.perf_counter() - start
    st = stats["stages"]
    return {"pages": st["fetch"]["out"], "docs": st["shards"]["out"], "wall": wall, "rss_mb": peak_rss_mb(),
            "fetch_failures": st["fetch"]["dropped"]}


def write_dump(path: Path, pages, repeat: int) -> None:
    import zstandard
    lines = []
    for r in range(repeat):
        for i, (url, _) in enumerate(pages):
            u = url if r == 0 else f"{url}{'&' if '?' in url else '?'}copy={r}"
            lines.append(json.dumps({"id": f"b{r}_{i}", "url": u, "score": 10, "is_self": False, "over_18": False,
                                     "subreddit": "bench", "created_utc": 1500000000}))
    path.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))


def spawn(args) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="serve each page under N URLs (N x 206 pages)")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        mode = args.child[0]
        result = child_floor(args.repeat) if mode == "floor" else child_beam(args.repeat, int(args.child[1]),
                                                                            *args.child[2:])
        print(json.dumps(result))
        return
    if not PAGES.is_dir():
        sys.exit(f"corpus not found at {PAGES}")

    from crawl.links import normalize_url
    from pipeline.demo.loopback import LoopbackWeb
    pages = page_set()
    web = LoopbackWeb()
    for r in range(args.repeat):
        for url, html in pages:
            u = url if r == 0 else f"{url}{'&' if '?' in url else '?'}copy={r}"
            web.add(normalize_url(u), html)
    with tempfile.TemporaryDirectory() as tmp, web:
        dump = Path(tmp) / "RS_bench.zst"
        write_dump(dump, pages, args.repeat)
        print(f"{len(pages) * args.repeat} pages, {os.cpu_count()} cores; each measurement in a fresh process")
        floor = spawn(["--child", "floor", "--repeat", str(args.repeat)])
        one = spawn(["--child", "beam", "1", web.proxy_url, str(dump), f"{tmp}/out1", "--repeat", str(args.repeat)])
        two = spawn(["--child", "beam", "2", web.proxy_url, str(dump), f"{tmp}/out2", "--repeat", str(args.repeat)])

    rows = [("floor (plain loop)", floor, 1), ("beam, 1 process", one, 1), ("beam, 2 processes", two, 2)]
    print(f"\n{'':<20} {'pages':>6} {'docs':>6} {'wall s':>8} {'pages/s':>8} {'peak RSS MB':>12}")
    for name, r, _ in rows:
        print(f"{name:<20} {r['pages']:>6} {r['docs']:>6} {r['wall']:>8.2f} {r['pages'] / r['wall']:>8.1f} "
              f"{r['rss_mb']:>12.0f}")
    floor_rate = floor["pages"] / floor["wall"]
    for name, r, workers in rows[1:]:
        print(f"{name}: per-core efficiency {r['pages'] / r['wall'] / workers / floor_rate:.2f} of the floor "
              f"(goal >= 0.85)")
    print(f"beam, 2 processes: wall time {floor['wall'] / two['wall']:.2f}x shorter than the plain loop (goal >= 1.5)")
    for name, r, _ in rows[1:]:
        if r.get("fetch_failures"):
            print(f"note: {name} fetch drops {r['fetch_failures']}")


if __name__ == "__main__":
    main()
