"""`webtext shards dedup-against` at scale: two sketch indexes of N documents each (random MinHash signatures, 1% of
DIR's planted as copies of OTHER's: half identical signatures, half with ~90% equal values), then the lookup
(pipeline.shards.against.find_pairs) timed in a fresh process, with its anonymous memory (the rest of its RSS is
the memory-mapped index files).

    python bench/dedup_against.py --n 1e5 [--dir /tmp/dedup-against-bench]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedup import index as sketch_index  # noqa: E402
from dedup.config import DedupConfig  # noqa: E402
from dedup.minhash import banding  # noqa: E402


def build(base: str, n: int) -> None:
    cfg = DedupConfig()
    bands, rows = banding(cfg)
    width = max(cfg.num_perm, bands * rows)
    rng = np.random.default_rng(0)
    other = rng.integers(0, 2**32, (n, width), dtype=np.uint32)
    mine = rng.integers(0, 2**32, (n, width), dtype=np.uint32)
    planted = rng.choice(n, n // 100, replace=False)
    same, close = planted[:len(planted) // 2], planted[len(planted) // 2:]
    mine[same] = other[same]
    edit = rng.random((len(close), width)) < 0.9
    mine[close] = np.where(edit, other[close], mine[close])
    for name, sigs, prefix in (("other", other, "b"), ("dir", mine, "a")):
        d = os.path.join(base, name)
        os.makedirs(d, exist_ok=True)
        Path(d, "manifest.json").write_text(json.dumps({"shards": [], "config": {}, "totals": {}}))
        sketch_index.write(sketch_index.generation_dir(d, 0),
                           ((f"{prefix}{i:015d}", 1, f"{prefix}{i:031x}", sigs[i].astype("<u4").tobytes(), True)
                            for i in range(n)), cfg)


def rss_anon() -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon")) * 1024


def search(base: str) -> dict:
    from pipeline.shards.against import Other, find_pairs, open_indexes

    class Bar:
        def update(self, n):
            pass

    anon0 = rss_anon()
    t, cpu = time.perf_counter(), time.process_time()
    dirs, others = open_indexes(os.path.join(base, "dir"), "DIR"), open_indexes(os.path.join(base, "other"), "OTHER")
    params = dirs[0].params
    width = max(params["num_perm"], params["bands"] * params["rows"])
    found = find_pairs(dirs, [Other(ix, width, False) for ix in others], params, params["threshold"], Bar())
    return {"docs": len(dirs[0]), "matched": len(found), "seconds": round(time.perf_counter() - t, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2), "anon_mb_added": round((rss_anon() - anon0) / 1e6, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=float, default=1e5)
    p.add_argument("--dir", default="/tmp/dedup-against-bench")
    p.add_argument("--search", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    base = os.path.join(args.dir, f"n{int(args.n)}")
    if args.search:
        print(json.dumps(search(base)))
        return
    t = time.perf_counter()
    build(base, int(args.n))
    print(f"built two indexes of {int(args.n):,} documents in {time.perf_counter() - t:.1f} s")
    out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--dir", args.dir, "--search"],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"dedup-against {r['docs']:,} vs {int(args.n):,} docs: {r['matched']:,} matched (planted "
          f"{int(args.n) // 100:,}), {r['seconds']} s wall, {r['cpu_seconds']} CPU-s, "
          f"+{r['anon_mb_added']} MB anonymous memory")


if __name__ == "__main__":
    main()
