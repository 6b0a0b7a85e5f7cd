"""`webtext shards overlap`: the GPT-2 paper's 8-gram Bloom-filter test of how much of a test set is in WebText.

    webtext shards overlap DIR --against FILE [FILE ...] [--split train] [--fpr 1e-8] [--json OUT.json]
    webtext shards overlap DIR --against FILE [FILE ...] --remove --out NEW_DIR [--min-grams 1]

The paper (sec. 4, "Generalization vs Memorization"): "We created Bloom filters containing 8-grams of WebText
training set tokens ... strings were normalized to contain only lower-cased alphanumeric words with a single space
as a delimiter ... false positive rate upper bounded by 1/10^8", and reports the percentage of each test set's
8-grams found in the filter. Here:
  - normalization works on UTF-8 bytes: ASCII letters are lower-cased; a word is a maximal run of ASCII letters and
    digits and non-ASCII bytes (letters of other scripts), except the Unicode punctuation blocks U+0080-U+00BF,
    U+2000-U+207F and U+3000-U+303F, which separate words like ASCII punctuation does. Non-ASCII letters are kept
    as they are (not case-folded). An 8-gram never spans two documents.
  - an 8-gram is a 64-bit hash of its 8 word hashes (splitmix64-mixed polynomial hashes, all numpy).
  - the Bloom filter is a numpy bit array of m = -n ln p / (ln 2)^2 bits with k = (m / n) ln 2 probes from double
    hashing, n = the train split's token count (>= its number of 8-grams: every word starts in a different token),
    p = --fpr. For WebText's ~9B train tokens that is 3.45e11 bits (43.1 GB) and k = 27.
  - the percentage counts 8-gram occurrences in the test file. False positives can only raise it: the printed
    bound is 100 * (filled bits / m)^k, the filter's actual false-positive rate (<= p).
--remove builds the filter from the test files instead and rewrites DIR's shards (every split) without the
documents that share at least --min-grams 8-grams with them; they are counted under stage "decontaminate",
reason "test_overlap", in the new manifest's stats and listed in NEW_DIR/_drops/.
"""
from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np

from core import files
from core import shard_format as shards
from pipeline.shards.bloom import (CHUNK_TOKENS, NGRAM, U64, BloomFilter, chunk_grams, filter_size, mix64,  # noqa: F401
                                    shard_chunks, text_grams)

# ------------------------------------------------------------------------------------------------ commands
def build_train_filter(data_dir: str, entries: List[dict], fpr: float, bar,
                       capacity: int = 0, k: int = 0) -> Tuple[BloomFilter, dict]:
    capacity = capacity or sum(e["tokens"] for e in entries)
    bloom = BloomFilter(capacity, fpr, k=k)
    grams = text_bytes = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for e in entries:
        for tokens, offsets, _ in shard_chunks(Path(data_dir) / e["name"]):
            g, _, nbytes = chunk_grams(tokens, offsets)
            bloom.add(g)
            grams, text_bytes = grams + len(g), text_bytes + nbytes
            bar.update(len(tokens))
    seconds = time.perf_counter() - t0
    return bloom, {"tokens": sum(e["tokens"] for e in entries), "capacity": capacity, "grams": grams,
                   "text_bytes": text_bytes, "seconds": seconds, "cpu_seconds": time.process_time() - cpu0,
                   "workers": 1}


def _plan(data_dir: str, entries: List[dict], chunk_tokens: int) -> List[Tuple[str, int, int, int]]:
    """(shard path, first doc, end doc, tokens) of every run of whole documents, the units parallel workers take."""
    plan = []
    for e in entries:
        path = Path(data_dir) / e["name"]
        _, offsets = shards.shard_tokens(path)
        doc = 0
        while doc < len(offsets) - 1:
            end = max(int(np.searchsorted(offsets, offsets[doc] + chunk_tokens, side="right")) - 1, doc + 1)
            plan.append((str(path), doc, end, int(offsets[end] - offsets[doc])))
            doc = end
    return plan


def _shared(shape, dtype) -> np.ndarray:
    import mmap
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, max(n, 8), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS), dtype)[
        :int(np.prod(shape))].reshape(shape)


def _fill_worker(w, plan, bloom, slots, counts, stats, barrier) -> None:
    """Round r: hash chunk r*P + w and hand each partition its 8-grams through slots[w, p]; then insert what every
    worker handed partition w. Only worker w ever writes partition w's words."""
    P = bloom.partitions
    maps = {}
    for r in range(-(-len(plan) // P)):
        i = r * P + w
        counts[w, :] = 0
        if i < len(plan):
            path, a, b, n = plan[i]
            if path not in maps:
                maps[path] = shards.shard_tokens(path)
            tokens, offsets = maps[path]
            g, _, nbytes = chunk_grams(tokens[offsets[a]:offsets[b]], offsets[a:b + 1] - offsets[a])
            part = bloom.partition_of(g)
            for p in range(P):
                sel = g[part == U64(p)]
                slots[w, p, :len(sel)] = sel
                counts[w, p] = len(sel)
            stats[w] += (len(g), nbytes, n)
        barrier.wait()
        for src in range(P):
            bloom.add(slots[src, w, :counts[src, w]])
        barrier.wait()


def build_train_filter_parallel(data_dir: str, entries: List[dict], fpr: float, bar, capacity: int,
                                workers: int, k: int = 0) -> Tuple[BloomFilter, dict]:
    """build_train_filter with `workers` forked processes filling a partitioned filter in shared memory."""
    import multiprocessing

    capacity = capacity or sum(e["tokens"] for e in entries)
    bloom = BloomFilter(capacity, fpr, partitions=workers, shared=True, k=k)
    t0, cpu0 = time.perf_counter(), os.times()
    plan = _plan(data_dir, entries, CHUNK_TOKENS // 8)
    cap = max((n for *_, n in plan), default=1)                 # 8-grams of a chunk <= its tokens
    slots = _shared((workers, workers, cap), U64)
    counts = _shared((workers, workers), np.int64)
    stats = _shared((workers, 3), np.int64)
    ctx = multiprocessing.get_context("fork")                   # children share the filter's memory
    barrier = ctx.Barrier(workers, timeout=3600)
    procs = [ctx.Process(target=_fill_worker, args=(w, plan, bloom, slots, counts, stats, barrier), daemon=True)
             for w in range(workers)]
    for proc in procs:
        proc.start()
    done = 0
    while any(proc.is_alive() for proc in procs):
        procs[0].join(0.2)
        if any(proc.exitcode not in (None, 0) for proc in procs):   # one died: the barrier would wait forever
            barrier.abort()
        now = int(stats[:, 2].sum())
        bar.update(now - done)
        done = now
    if any(proc.exitcode != 0 for proc in procs):
        from pipeline.shards.browse import DataError
        raise DataError(f"an overlap worker failed (exit codes {[p.exitcode for p in procs]}); rerun with --workers 1")
    bar.update(int(stats[:, 2].sum()) - done)
    seconds, cpu = time.perf_counter() - t0, os.times()
    cpu_seconds = sum(getattr(cpu, f) - getattr(cpu0, f) for f in ("user", "system", "children_user", "children_system"))
    return bloom, {"tokens": sum(e["tokens"] for e in entries), "capacity": capacity,
                   "grams": int(stats[:, 0].sum()), "text_bytes": int(stats[:, 1].sum()), "seconds": seconds,
                   "cpu_seconds": cpu_seconds, "workers": workers}


def read_test_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        from core.settings import UsageError
        raise UsageError(f"--against {path}: cannot read it ({e.strerror or e})") from None


def cmd_overlap(args) -> int:
    from pipeline.shards.browse import progress as _progress, human_bytes, load_manifest, select

    manifest = load_manifest(args.dir)
    tests = {path: read_test_file(path) for path in args.against}
    if args.remove:
        return remove_overlap(args, manifest, tests)
    entries = select(manifest, args.split)
    with _progress(sum(e["tokens"] for e in entries), "tok", args.quiet) as bar:
        if args.workers > 1:
            bloom, built = build_train_filter_parallel(args.dir, entries, args.fpr, bar, args.capacity, args.workers,
                                                       args.probes)
        else:
            bloom, built = build_train_filter(args.dir, entries, args.fpr, bar, args.capacity, args.probes)
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) * 1024
    print(f"train: {args.split} split of {args.dir}: {built['tokens']:,} tokens, {built['grams']:,} 8-grams, "
          f"{built['text_bytes'] / 1e6:,.1f} MB of text in {built['seconds']:.1f} s "
          f"({built['text_bytes'] / 1e9 / max(built['seconds'], 1e-9):.4f} GB/s; "
          f"{built['text_bytes'] / 1e6 / max(built['cpu_seconds'], 1e-9):.1f} MB per CPU-second, {built['workers']} "
          f"process(es)); Bloom filter {human_bytes(bloom.nbytes)} "
          f"(m={bloom.m:,} bits, k={bloom.k}, design fpr {args.fpr:g}, filled {bloom.fill():.1%}, "
          f"actual fpr {bloom.fpr():.2g}); peak memory {human_bytes(rss)}")
    fp_points = 100 * bloom.fpr()
    results = []
    for path, data in tests.items():
        grams = text_grams(data)
        hits = int(bloom.contains(grams).sum())
        unique = np.unique(grams)
        unique_hits = int(bloom.contains(unique).sum())
        percent = 100 * hits / len(grams) if len(grams) else 0.0
        results.append({"file": path, "grams": len(grams), "in_train": hits, "percent": percent,
                        "unique_grams": len(unique), "unique_in_train": unique_hits,
                        "unique_percent": 100 * unique_hits / len(unique) if len(unique) else 0.0,
                        "false_positive_points_at_most": fp_points})
        print(f"{path}: {percent:.2f}% of {len(grams):,} 8-grams in {args.split} "
              f"(unique: {results[-1]['unique_percent']:.2f}% of {len(unique):,}; "
              f"Bloom false positives add at most {fp_points:.2g} points)")
    if args.json:
        report = {"data": str(args.dir), "split": args.split, "ngram": NGRAM,
                  "filter": {"bits": bloom.m, "bytes": bloom.nbytes, "k": bloom.k, "design_fpr": args.fpr,
                             "fill": bloom.fill(), "fpr": bloom.fpr()},
                  "train": dict(built, gb_per_s=built["text_bytes"] / 1e9 / max(built["seconds"], 1e-9),
                                peak_rss_bytes=rss),
                  "tests": results}
        _write_json(Path(args.json), report)
    return 0


def _write_json(path: Path, obj) -> None:
    files.write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def remove_overlap(args, manifest: dict, tests: dict) -> int:
    """Rewrite every shard without the documents that share >= min_grams 8-grams with the test files."""
    from pipeline.shards.rewrite import check_out, copy_without

    out = check_out(args.dir, args.out)
    test_grams = {path: text_grams(data) for path, data in tests.items()}
    bloom = BloomFilter(sum(len(g) for g in test_grams.values()), args.fpr)
    for g in test_grams.values():
        bloom.add(g)

    def verdicts(e, rows, bar):
        hits = np.zeros(e["docs"], np.int64)
        for tokens, offsets, first in shard_chunks(Path(args.dir) / e["name"]):
            g, docs, _ = chunk_grams(tokens, offsets)
            hits[first:first + len(offsets) - 1] += np.bincount(docs[bloom.contains(g)], minlength=len(offsets) - 1)
            bar.update(len(tokens))
        return [("test_overlap", f"{int(n)} 8-grams shared with the test files") if n >= args.min_grams else None
                for n in hits.tolist()]

    kept, dropped = copy_without(args.dir, manifest, out, verdicts,
                                 {"against": list(tests), "min_grams": args.min_grams}, args.quiet)
    dropped = sum(dropped.values())
    print(f"decontaminate: kept {kept:,} of {kept + dropped:,} docs; dropped {dropped:,} under reason test_overlap "
          f"(>= {args.min_grams} shared 8-grams with {len(tests)} test file(s)); wrote {out}")
    return 0


def add_parser(sub, common) -> None:
    """The `overlap` subcommand of `webtext shards`."""
    p = sub.add_parser("overlap", parents=[common], help="8-gram overlap of test files with the train split",
                       description="The GPT-2 paper's 8-gram Bloom-filter overlap analysis.")
    p.add_argument("dir", metavar="DIR", help="a shard directory (the --out of `webtext run`)")
    p.add_argument("--against", nargs="+", required=True, metavar="FILE", help="test set text files")
    p.add_argument("--split", choices=("train", "val", "all"), default="train", help="the split in the filter")
    p.add_argument("--fpr", type=float, default=1e-8, help="design false-positive rate (default 1e-8, the paper's)")
    p.add_argument("--capacity", type=int, default=0, metavar="N",
                   help="size the filter for N 8-grams (default: the split's token count, an upper bound)")
    p.add_argument("--probes", type=int, default=0, metavar="K",
                   help="probes per 8-gram (default: the optimum, 27 at 1e-8); fewer is faster and the filter grows "
                        "to keep --fpr (16: +9%% memory, 1.7x fewer memory accesses)")
    p.add_argument("--workers", type=int, default=1, metavar="P",
                   help="processes filling the filter (a P-way partitioned filter in shared memory; default 1)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    p.add_argument("--remove", action="store_true", help="write DIR's shards without documents overlapping FILEs")
    p.add_argument("--out", metavar="NEW_DIR", help="with --remove: the new shard directory")
    p.add_argument("--min-grams", type=int, default=1, help="with --remove: drop a doc sharing >= N 8-grams")
    p.set_defaults(func=_checked)


def _checked(args) -> int:
    from core.settings import UsageError

    if not 0 < args.fpr < 1:
        raise UsageError(f"--fpr must be between 0 and 1, got {args.fpr}")
    if args.remove and not args.out:
        raise UsageError("--remove needs --out NEW_DIR (the shards are rewritten, never changed in place)")
    if args.out and not args.remove:
        raise UsageError("--out is for --remove; without it overlap only reports (use --json FILE for numbers)")
    if not 1 <= args.workers <= 256:
        raise UsageError(f"--workers must be 1..256, got {args.workers}")
    if not 0 <= args.probes <= 64:
        raise UsageError(f"--probes must be 1..64 (0: the optimum), got {args.probes}")
    if args.capacity < 0:
        raise UsageError(f"--capacity must be >= 0, got {args.capacity}")
    if args.min_grams < 1:
        raise UsageError(f"--min-grams must be >= 1, got {args.min_grams}")
    return cmd_overlap(args)
