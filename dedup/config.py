"""Dedup settings: one frozen dataclass of plain values (the banding it implies is derived in dedup.minhash)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True               # drop documents whose normalized text is identical
    near: bool = True                # drop near-duplicates (MinHash LSH)
    threshold: float = 0.8           # Jaccard similarity of word shingle sets that counts as near-duplicate
    num_perm: int = 128              # permutation budget; the signature uses bands * rows <= num_perm of them
    bands: Optional[int] = None      # override the LSH banding (give both bands and rows) ...
    rows: Optional[int] = None       # ... instead of deriving it from threshold and num_perm
    shingle_size: int = 5            # word n-grams, as datatrove
    seed: int = 1                    # seed of the MinHash permutations (fixed: same ids -> same clusters)
    verify_candidates: bool = True   # keep an LSH candidate pair only if its estimated Jaccard >= threshold
    min_recall: float = 0.95         # with verification: banding that makes a pair AT the threshold a candidate
                                     # with this probability (fewest false candidates among such bandings)
    max_rounds: int = 10             # large-star/small-star rounds for connected components (~log^2 diameter)
    max_bucket: int = 1000           # LSH buckets larger than this are verified against leaders, not all pairs
    prefer_first_seen_before: int = 0  # unix time; > 0: documents first posted before it beat later ones (as --add-to)

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.bands is not None and (self.bands < 1 or self.rows < 1):
            raise ValueError("bands and rows must be >= 1")
        if not 0.0 < self.min_recall < 1.0:
            raise ValueError(f"min_recall must be in (0, 1), got {self.min_recall}")
        if not 1 <= self.shingle_size <= 64:
            raise ValueError(f"shingle_size must be between 1 and 64, got {self.shingle_size}")
        if self.num_perm < 1 or self.max_rounds < 1 or self.max_bucket < 2:
            raise ValueError("num_perm and max_rounds must be >= 1 and max_bucket >= 2")
