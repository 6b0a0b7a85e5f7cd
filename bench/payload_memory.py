"""Main-process peak RSS of the stages after extraction (dedup + shards) on N synthetic filled Documents, with the
tokens crossing the shuffles ("plain", the path before payload files) and with payload files ("payload").

    python bench/payload_memory.py [--sizes 1e4,5e4,1e5] [--modes plain,payload] [--holders]
                                   [--malloc runner|default]

Each (size, mode) runs in a fresh process on FnApiRunner. Documents are made in the pipeline (600-1,000 random
tokens, a random 128-value signature, ~3% exact copies), so the input list is not what is measured; no text, no
fetch, no extraction: what grows is what the local runner holds at the stage boundaries of Deduplicate and
WriteShards. Prints peak RSS per run and, per mode, the growth between sizes in bytes per kept document.
`--holders` adds, per stage, the RSS before it and what each buffer waiting in FnApiRunner's queues holds (what
docs/scaling.md's table of holders came from); `--malloc runner` (default) sets glibc and Arrow's
pool as `webtext run` does.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]   # bench/pipeline.py shadows `pipeline`
sys.path.insert(0, str(ROOT))


def one(n: int, mode: str, work: str, holders: bool = False, malloc: str = "runner") -> dict:
    import hashlib

    import apache_beam as beam
    import numpy as np
    from apache_beam.options.pipeline_options import PipelineOptions

    from core import payloads
    from core.records import Document
    from dedup import DedupConfig, Deduplicate
    from pipeline.config import ShardConfig
    from pipeline.per_document import WritePayloads
    from pipeline.shards.write import WriteShards

    def make(i):
        r = np.random.RandomState(i % (n - n // 30) if i else 0)      # ~3% exact copies of earlier documents
        toks = r.randint(0, 50000, 600 + r.randint(0, 400)).astype("<u2")
        toks[-1] = 50256
        sig = r.randint(0, 2**32, 128, dtype=np.uint64).astype("<u4").tobytes()
        url = f"https://news{i % 997}.example.com/2019/02/article-{i}-some-title-words"
        return Document(hashlib.blake2b(url.encode(), digest_size=8).hexdigest(), url, "", int(r.randint(3, 500)),
                        ("worldnews",), 1550000000 + i, toks.tobytes(),
                        hashlib.blake2b(toks.tobytes(), digest_size=16).hexdigest(), sig)

    if malloc == "runner":   # as `webtext run` sets it in its process (pipeline/runner.py)
        from core.memory import arrow_frees_too, return_large_frees
        return_large_frees()
        arrow_frees_too()
    out = tempfile.mkdtemp(dir=work)
    log: list = []
    if holders:
        watch_buffers(log)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        docs = (p | beam.Create(list(range(0, n, 1000)))
                | beam.FlatMap(lambda s: (make(i) for i in range(s, min(n, s + 1000))))
                .with_output_types(Document))   # Beam 2.78 infers a generator lambda's output as a function
        pdir = None
        if mode == "payload":
            pdir = payloads.payload_dir(out)
            docs = docs | beam.ParDo(WritePayloads(pdir))
        unique = docs | Deduplicate(DedupConfig(), pdir)
        _ = unique["documents"] | WriteShards(out, ShardConfig(), {})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    totals = json.loads((Path(out) / "manifest.json").read_text())["totals"]
    return {"n": n, "mode": mode, "start_mb": start / 1024, "peak_mb": peak / 1024,
            "kept": sum(t["docs"] for t in totals.values()), "bundles": log}


def _deep_size(obj, seen=None) -> int:
    """Bytes of Python objects reachable from a decoded shuffle value (containers, str, bytes, ints)."""
    import sys as _sys
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = _sys.getsizeof(obj)
    if isinstance(obj, (tuple, list, set, frozenset)):
        size += sum(_deep_size(o, seen) for o in obj)
    elif isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    return size


def _buffer_size(buf, sample: int = 200):
    """(records, estimated bytes) one FnApiRunner buffer holds: a GroupingBuffer's decoded values (sampled, with
    their keys and lists), a ListBuffer's encoded bytes."""
    table = getattr(buf, "_table", None)
    if table is not None:
        records = sum(len(v) for v in table.values())
        keys = list(table.items())[:sample]
        one = sum(_deep_size(k) + _deep_size(v) + 100 for k, v in keys)   # +100: the dict's slot, roughly
        grouped = sum(len(b) for part in (buf._grouped_output or []) for b in part)
        return records, (one * len(table) // max(1, len(keys))) + grouped
    inputs = getattr(buf, "_inputs", [])
    grouped = sum(len(b) for part in (getattr(buf, "_grouped_output", None) or []) for b in part)
    return len(inputs), sum(len(b) for b in inputs) + grouped


def watch_buffers(log: list) -> None:
    """Before every bundle: the main process's RSS and what each waiting buffer holds, by consuming transform."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    original = fn_runner.FnApiRunner._execute_bundle

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def hwm_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def execute(self, ctx, bcm, bundle_input):
        held = {}
        queues = ctx.queues
        pending = list(queues.ready_inputs._q) + list(queues.watermark_pending_inputs._q) + [("*", bundle_input)]
        for _, data_input in pending:
            for transform, buf in data_input.data.items():
                n, size = _buffer_size(buf)
                name = transform.split("/", 1)[-1][:70] if isinstance(transform, str) else str(transform)
                if size > 1 << 20:
                    held[name] = (n, size)
        log.append({"stage": bcm.stage.name[:90], "rss_mb": rss_mb(), "hwm_mb": hwm_mb(),
                    "held": {k: [n, round(s / 2**20, 1)] for k, (n, s) in held.items()}})
        return original(self, ctx, bcm, bundle_input)

    fn_runner.FnApiRunner._execute_bundle = execute



def print_holders(bundles: list) -> None:
    """One line per stage (its first bundle): RSS then, and the buffers over 1 MB waiting for it or later stages."""
    seen = set()
    for b in bundles:
        if b["stage"] in seen:
            continue
        seen.add(b["stage"])
        held = ", ".join(f"{k} {mb} MB/{n:,}" for k, (n, mb) in sorted(b["held"].items(), key=lambda kv: -kv[1][1]))
        print(f"    {b['rss_mb']:6.0f} MB (peak so far {b['hwm_mb']:4.0f}) before {b['stage'][:80]}\n        held: {held}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1e4,5e4,1e5")
    ap.add_argument("--modes", default="plain,payload")
    ap.add_argument("--holders", action="store_true",
                    help="before every bundle, log RSS and what each waiting runner buffer holds (MB, records)")
    ap.add_argument("--malloc", choices=("runner", "default"), default="runner",
                    help="glibc settings: those `webtext run` sets (core/memory.py, the default) or glibc's own")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="webtext-payload-memory-")
    if args.one:
        print(json.dumps(one(int(float(args.one[0])), args.one[1], work, args.holders, args.malloc)))
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    for mode in args.modes.split(","):
        for n in args.sizes.split(","):
            r = subprocess.run([sys.executable, __file__, "--one", n, mode, "--malloc", args.malloc]
                               + ["--holders"] * args.holders, env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=3600)
            if r.returncode:
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(f"{mode:>8} {rows[-1]['n']:>9,} docs: peak RSS {rows[-1]['peak_mb']:7.0f} MB "
                  f"({rows[-1]['kept']:,} kept)", flush=True)
            if args.holders:
                print_holders(rows[-1]["bundles"])
    for mode in args.modes.split(","):
        mine = [r for r in rows if r["mode"] == mode]
        for a, b in zip(mine, mine[1:]):
            print(f"{mode:>8} {a['n']:,} -> {b['n']:,}: {b['peak_mb'] / a['peak_mb']:.2f}x, "
                  f"{(b['peak_mb'] - a['peak_mb']) * 2**20 / (b['kept'] - a['kept']):,.0f} bytes per kept document")
    return 0


if __name__ == "__main__":
    sys.exit(main())
