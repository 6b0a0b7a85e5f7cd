"""Exact and near-duplicate removal (MinHash LSH) as Beam transforms; plain functions underneath.

    from dedup import Deduplicate, DedupConfig
    out = documents | Deduplicate(DedupConfig(threshold=0.8))
    out["documents"], out["dropped"]
"""
from dedup.config import DedupConfig
from dedup.survivor import Member, pick_survivor, survivor_key
from dedup.transform import Deduplicate
from dedup.exact import EXACT, ExactDuplicates, exact_group
from dedup.minhash import (Sketch, band_keys, banding, estimated_jaccard, lsh_params, normalized_words, s_curve, shingle_hashes,
                           shingles, signature, signature_of_hashes, sketch, text_fingerprint)
from dedup.near import NEAR, ConnectedComponents, NearDuplicates, bucket_edges, connected_components

__all__ = [
    "EXACT", "NEAR", "DedupConfig", "Member", "Sketch", "Deduplicate", "ExactDuplicates", "NearDuplicates",
    "ConnectedComponents", "pick_survivor", "survivor_key", "normalized_words", "text_fingerprint", "shingles",
    "shingle_hashes", "signature", "signature_of_hashes", "estimated_jaccard", "s_curve", "lsh_params", "banding", "band_keys",
    "sketch", "exact_group", "bucket_edges", "connected_components",
]
