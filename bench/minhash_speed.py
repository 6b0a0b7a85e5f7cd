"""Throughput of dedup's per-document step (the CPU cost of dedup): python bench/minhash_speed.py [docs] [words]

Documents are slices of real English prose that ships with Python (pydoc_data.topics). Compares our
signature (cached word hashes -> vectorized shingle hashes -> MinHash with permutations on the outer axis)
with datasketch used plainly (a string per shingle, its default SHA-1 hash, `update_batch`).
"""
import sys
import time

import numpy as np
from datasketch import MinHash
from pydoc_data.topics import topics

from core.records import Document
from dedup.config import DedupConfig
from dedup.minhash import banding, shingles, sketch


def main(n_docs: int = 1000, n_words: int = 2000) -> None:
    prose = " ".join(topics.values()).split()
    starts = np.random.RandomState(0).randint(0, len(prose) - n_words, n_docs)
    docs = [Document(f"{i:016x}", f"http://x.example/{i}", " ".join(prose[s:s + n_words]), 3, (), 0)
            for i, s in enumerate(starts)]
    cfg = DedupConfig()
    bands, rows = banding(cfg)
    print(f"{n_docs} docs x {n_words} words; signature of {cfg.num_perm} permutations, banded {bands} x {rows}")

    t = time.perf_counter()
    for d in docs:
        sketch(d, cfg)
    ours = n_docs / (time.perf_counter() - t)
    print(f"sketch (normalize, fingerprint, signature)  {ours:7.0f} docs/s")

    sample = docs[:min(200, n_docs)]
    t = time.perf_counter()
    for d in sample:
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch([s.encode("utf-8") for s in shingles(d.text, cfg.shingle_size)])
    plain = len(sample) / (time.perf_counter() - t)
    print(f"datasketch plainly (shingle strings, SHA-1) {plain:7.0f} docs/s   -> ours is {ours / plain:.1f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
