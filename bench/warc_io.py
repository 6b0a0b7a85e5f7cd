"""WARC capture and read-back costs of the crash-safe, bounded versions, as ratios against baselines measured here.

    python bench/warc_io.py [--pages 2000] [--size 20000]

Capture: WarcSink as webtext runs it locally (lock, a flush per page so a killed run loses nothing, fsync at each
commit) against the same writer with those off (what a sink on an object store does). Read: load_page (each
record decompressed under the size bound, then parsed from memory) against warcio streaming the same records
unbounded (the reader before the bound).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from core.records import Link, Page  # noqa: E402
from crawl.fetch.fetcher import FetchResult  # noqa: E402
from crawl.fetch.warc import WarcSink, load_page, outcome_files, parse_outcomes  # noqa: E402


def pages(n, size):
    filler = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    for i in range(n):
        url = f"http://bench{i % 50}.example/{i}"
        body = f"<html><body><p>{i} {filler}</p></body></html>".encode()
        yield Page(Link(url, url.split("/")[2], 5, ("s",), 1_400_000_000, 1), url, 200, "text/html", body, "utf-8", 1e9)


def capture(d, ps, crash_safe):
    sink = WarcSink(d, rotate=1000, commit_seconds=0)
    sink.local = crash_safe
    t = time.perf_counter()
    for p in ps:
        sink.add(p.link, FetchResult("ok", p))
    sink.close()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=20000)
    a = ap.parse_args()
    ps = list(pages(a.pages, a.size))
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as safe:
        t_base, t_safe = capture(base, ps, False), capture(safe, ps, True)
        recs = [r for path in outcome_files(safe) for r in parse_outcomes(open(path, "rb"))]
        t = time.perf_counter()
        for r in recs:
            with open(f"{safe}/{r.warc}", "rb") as f:
                f.seek(r.offset)
                rec = next(iter(ArchiveIterator(f)))
                rec.raw_stream.read()
        t_warcio = time.perf_counter() - t
        t = time.perf_counter()
        for r in recs:
            load_page(safe, r)
        t_bounded = time.perf_counter() - t
    print(f"capture {a.pages} pages of {a.size} B: {t_base:.3f} s plain, {t_safe:.3f} s crash-safe "
          f"-> {t_safe / t_base:.2f}x")
    print(f"read {len(recs)} records: {t_warcio:.3f} s warcio unbounded, {t_bounded:.3f} s bounded load_page "
          f"-> {t_bounded / t_warcio:.2f}x")


if __name__ == "__main__":
    main()
