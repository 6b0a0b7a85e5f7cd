"""Peak memory of `webtext extract --warc` as the corpus grows: does the local runner stay flat?

The 206 real pages of ../shared/corpus/pages are written into WARCs N times, each copy under its own URL and made
a distinct document (in copy r, the words of 4+ letters in the page's text are permuted among words of the same
length, seeded by r: same lengths, same stop words, still English, but other 5-grams, so dedup keeps every copy
and each one reaches the shards), then `webtext extract --warc` runs on FnApiRunner in a fresh process with 1
extraction process.
Prints the main process's peak RSS per size and the growth per page between sizes (the number that says whether
an OpenWebText-sized local run fits). With --trace it also takes tracemalloc snapshots while the largest size
runs and prints where the peak's Python allocations were made (by file), to see which stage holds what.

    python bench/memory.py [--repeats 1,4,16] [--code DIR] [--trace] [--env KEY=VALUE]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/pipeline.py is named like the `pipeline` package; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
PAGES = ROOT.parent / "shared" / "corpus" / "pages"
CHILD = r"""
import json, resource, sys, threading, time, tracemalloc
trace = sys.argv[3] == "1"
import apache_beam.runners.portability.fn_api_runner.fn_runner, pipeline.build, webtext  # imports before the baseline
best = {"size": 0, "snap": None}
if trace:
    tracemalloc.start(1)
    base_size, base = tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()
    def watch():
        while True:
            cur, _ = tracemalloc.get_traced_memory()
            if cur > best["size"] * 1.02 + (1 << 20):
                best["size"], best["snap"] = cur, tracemalloc.take_snapshot()
            time.sleep(1.0)
    threading.Thread(target=watch, daemon=True).start()
from webtext import main
rc = main(["extract", "--warc", sys.argv[1], "--out", sys.argv[2], "--quiet", "--set", "extract.processes=1",
           "--set", "run.write_drops=false"])
top, grown = [], 0
if trace and best["snap"] is not None:
    grown = (best["size"] - base_size) / 2**20
    for s in best["snap"].compare_to(base, "lineno")[:10]:
        top.append([f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}", s.size_diff])
manifest = json.load(open(sys.argv[2] + "/manifest.json"))
print(json.dumps({"rc": rc, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "traced_peak_mb": grown, "top": top,
                  "docs": sum(s["docs"] for s in manifest["shards"]), "shards": len(manifest["shards"])}))
"""

WORD = re.compile(rb"\b[a-z]{4,}\b")
TEXT = re.compile(rb">[^<]+<")


def unique_copies(bodies, repeat: int):
    """Copy r of every body, r = 0 the page itself; see the module doc."""
    by_length = {}
    for body in bodies:
        for text in TEXT.findall(body):
            for w in WORD.findall(text):
                by_length.setdefault(len(w), set()).add(w)
    groups = {n: sorted(ws) for n, ws in by_length.items()}
    for r in range(repeat):
        if r == 0:
            yield list(bodies)
            continue
        rng = random.Random(r)
        swap = {}
        for ws in groups.values():
            shuffled = ws[:]
            rng.shuffle(shuffled)
            swap.update(zip(ws, shuffled))
        sub = lambda m: WORD.sub(lambda w: swap[w.group()], m.group())  # noqa: E731
        yield [TEXT.sub(sub, body) for body in bodies]


def write_warcs(warc_dir: Path, repeat: int) -> int:
    sys.path.insert(0, str(ROOT))
    from core.records import Link, Page
    from crawl.fetch.fetcher import FetchResult
    from crawl.fetch.warc import WarcSink
    from crawl.links import normalize_url

    expectations = json.loads((PAGES / "expectations.json").read_text())
    sink = WarcSink(str(warc_dir), rotate=500)
    n = 0
    names = sorted(expectations)
    for r, bodies in enumerate(unique_copies([(PAGES / name).read_bytes() for name in names], repeat)):
        for name, body in zip(names, bodies):
            e = expectations[name]
            url = e["url"] if e["url"].startswith("http") else f"http://{name.removesuffix('.html')}.example/"
            url = normalize_url(url if r == 0 else f"{url}{'&' if '?' in url else '?'}copy={r}") or url
            link = Link(url, url.split("/")[2], 10, ("bench",), 1_500_000_000)
            page = Page(link, url, 200, "text/html", body, "", 1_500_000_000.0)
            sink.add(link, FetchResult("ok", page))
            n += 1
    sink.close()
    return n


def measure(code: Path, repeat: int, trace: bool, extra_env=()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        pages = write_warcs(Path(tmp) / "warc", repeat)
        env = dict(os.environ, PYTHONPATH=str(code), **dict(e.split("=", 1) for e in extra_env))
        out = subprocess.run([sys.executable, "-c", CHILD, f"{tmp}/warc", f"{tmp}/out", "1" if trace else "0"],
                             cwd=code, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        return dict(json.loads(out.stdout.strip().splitlines()[-1]), pages=pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", default="1,4,16", help="copies of the 206 pages, comma-separated")
    parser.add_argument("--code", default=str(ROOT), help="the webtext tree to measure (default: this one)")
    parser.add_argument("--trace", action="store_true", help="tracemalloc attribution at the largest size")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the measured process, e.g. MALLOC_MMAP_THRESHOLD_=131072")
    args = parser.parse_args()
    repeats = [int(r) for r in args.repeats.split(",")]
    rows = [measure(Path(args.code), r, args.trace and r == repeats[-1], args.env) for r in repeats]
    print(f"{'pages':>7} {'docs':>6} {'shards':>6} {'peak RSS MB':>12} {'KB/page vs first':>17}")
    for row in rows:
        grow = (row["rss_mb"] - rows[0]["rss_mb"]) * 1024 / (row["pages"] - rows[0]["pages"]) \
            if row["pages"] > rows[0]["pages"] else 0.0
        print(f"{row['pages']:>7} {row['docs']:>6} {row['shards']:>6} {row['rss_mb']:>12.0f} {grow:>17.1f}")
    if rows[-1]["top"]:
        print(f"\ntracemalloc: Python allocations live at the peak grew {rows[-1]['traced_peak_mb']:.1f} MB over the "
              f"baseline after imports; largest growth by line:")
        for name, size in rows[-1]["top"]:
            print(f"  {size / 2**20:8.1f} MB  {name}")


if __name__ == "__main__":
    main()
