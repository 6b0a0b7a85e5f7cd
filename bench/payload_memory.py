"""Main-process peak RSS of the stages after extraction (dedup + shards) on N synthetic filled Documents, with the
tokens crossing the shuffles ("plain", the path before payload files) and with payload files ("payload").

    python bench/payload_memory.py [--sizes 1e4,5e4,1e5] [--modes plain,payload]

Each (size, mode) runs in a fresh process on FnApiRunner. Documents are made in the pipeline (600-1,000 random
tokens, a random 128-value signature, ~3% exact copies), so the input list is not what is measured; no text, no
fetch, no extraction: what grows is what the local runner holds at the stage boundaries of Deduplicate and
WriteShards. Prints peak RSS per run and, per mode, the growth between sizes in bytes per kept document.
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


def one(n: int, mode: str, work: str) -> dict:
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

    out = tempfile.mkdtemp(dir=work)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        docs = (p | beam.Create(list(range(0, n, 1000)))
                | beam.FlatMap(lambda s: (make(i) for i in range(s, min(n, s + 1000)))))
        pdir = None
        if mode == "payload":
            pdir = payloads.payload_dir(out)
            docs = docs | beam.ParDo(WritePayloads(pdir))
        unique = docs | Deduplicate(DedupConfig(), pdir)
        _ = unique["documents"] | WriteShards(out, ShardConfig(), {})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    totals = json.loads((Path(out) / "manifest.json").read_text())["totals"]
    return {"n": n, "mode": mode, "start_mb": start / 1024, "peak_mb": peak / 1024,
            "kept": sum(t["docs"] for t in totals.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1e4,5e4,1e5")
    ap.add_argument("--modes", default="plain,payload")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="webtext-payload-memory-")
    if args.one:
        print(json.dumps(one(int(float(args.one[0])), args.one[1], work)))
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    for mode in args.modes.split(","):
        for n in args.sizes.split(","):
            r = subprocess.run([sys.executable, __file__, "--one", n, mode], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=3600)
            if r.returncode:
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(f"{mode:>8} {rows[-1]['n']:>9,} docs: peak RSS {rows[-1]['peak_mb']:7.0f} MB "
                  f"({rows[-1]['kept']:,} kept)", flush=True)
    for mode in args.modes.split(","):
        mine = [r for r in rows if r["mode"] == mode]
        for a, b in zip(mine, mine[1:]):
            print(f"{mode:>8} {a['n']:,} -> {b['n']:,}: {b['peak_mb'] / a['peak_mb']:.2f}x, "
                  f"{(b['peak_mb'] - a['peak_mb']) * 2**20 / (b['kept'] - a['kept']):,.0f} bytes per kept document")
    return 0


if __name__ == "__main__":
    sys.exit(main())
