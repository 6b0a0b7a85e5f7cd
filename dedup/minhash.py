"""Text normalization, exact fingerprints, word shingles, MinHash signatures and LSH banding (plain functions).

Normalization (shared by exact and near dedup): Unicode NFKC, lower-case, every run of non-word characters
(punctuation, symbols, whitespace) becomes one space. So two pages that differ only in case, quotes, dashes,
punctuation or layout whitespace are *exact* duplicates; digits and word order still count. The words of this
normalized text are what the shingles are made of (datatrove does the same before its 5-gram MinHash).

Signatures follow datasketch's `MinHash` ("affine32" scheme, its seeded permutations): each shingle hash is
pre-mixed with the MurmurHash3 finalizer, permuted by `a*h + b mod 2^32`, and the minimum kept per permutation.
We compute exactly that (a test checks it against `MinHash.update_batch`), but with the permutations on the
outer axis, which numpy runs several times faster, and with shingles hashed from cached per-word hashes
instead of hashing a string per shingle.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import List, NamedTuple, Set, Tuple

import numpy as np

from dedup.config import DedupConfig

_NON_WORD = re.compile(r"\W+")
_trapezoid = getattr(np, "trapezoid", None) or np.trapz   # numpy < 2 has only trapz


def normalized_words(text: str) -> List[str]:
    """NFKC, lower-case, split on anything that is not a word character."""
    if not text.isascii():                      # NFKC leaves ASCII unchanged: skip it for the common case
        text = unicodedata.normalize("NFKC", text)
    return _NON_WORD.sub(" ", text.lower()).split()


def fingerprint_of_words(words: List[str]) -> str:
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).hexdigest()


def text_fingerprint(text: str) -> str:
    """128-bit hash (hex) of the normalized text: equal fingerprints <=> exact duplicates."""
    return fingerprint_of_words(normalized_words(text))


def shingles(text: str, n: int = 5) -> Set[str]:
    """Word n-grams of the normalized text (a text shorter than n words is one shingle; no words -> empty)."""
    words = normalized_words(text)
    if len(words) <= n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


# ------------------------------------------------------------------------------------------- hashing
_word_hashes: dict = {}          # per-process cache: a word's hash is a pure function of the word
_WORD_CACHE_MAX = 1 << 20
# fixed odd multipliers that make a shingle's hash depend on word order (position j -> _POS[j])
_POS = np.random.RandomState(0x5EED).randint(0, 1 << 62, 64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _word_hash_array(words: List[str]) -> np.ndarray:
    hs = list(map(_word_hashes.get, words))     # cache hits at C speed; hash only the misses
    if None in hs:
        if len(_word_hashes) >= _WORD_CACHE_MAX:
            _word_hashes.clear()
        for i, h in enumerate(hs):
            if h is None:
                hs[i] = _word_hashes[words[i]] = _word_hash(words[i])
    return np.array(hs, dtype=np.uint64)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: datasketch's pre-mix of every input hash (affine32 scheme)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(words: List[str], n: int = 5) -> np.ndarray:
    """32-bit hash of every word n-gram (same n-grams as `shingles`), vectorized over cached word hashes."""
    if not words:
        return np.zeros(0, dtype=np.uint32)
    if n > len(_POS):
        raise ValueError(f"shingle size must be <= {len(_POS)}")
    wh = _word_hash_array(words)
    width = min(n, len(wh))                     # a short text is one shingle of all its words
    count = len(wh) - width + 1
    h = np.zeros(count, dtype=np.uint64)
    for j in range(width):
        h += wh[j:j + count] * _POS[j]          # wraps mod 2^64 on purpose
    h = _fmix64(h)
    return ((h >> np.uint64(32)) ^ h).astype(np.uint32)


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """datasketch's seeded affine32 permutations (a odd, b), each shaped (num_perm, 1) for broadcasting."""
    # imported here: datasketch imports scipy (~1 s), which a run's main process, reading the dump and starting
    # the job on one core, does not need; the extraction workers get it preloaded by their forkserver
    from datasketch import MinHash
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.reshape(-1, 1), b.reshape(-1, 1)


def signature_of_hashes(hashes: np.ndarray, num_perm: int, seed: int = 1, chunk: int = 8192) -> np.ndarray:
    """== MinHash(num_perm, seed, hashfunc=int).update_batch(hashes).hashvalues, computed (num_perm, n)-wise."""
    a, b = permutations(num_perm, seed)
    sig = np.full(num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    for i in range(0, len(hashes), chunk):     # bound memory on very long documents
        hv = _fmix32(np.asarray(hashes[i:i + chunk], dtype=np.uint32)).reshape(1, -1)
        permuted = a * hv
        permuted += b                            # in place: a second temporary made this 3x slower
        np.minimum(sig, permuted.min(axis=1), out=sig)
    return sig


def signature(text: str, cfg: DedupConfig = DedupConfig()) -> np.ndarray:
    """MinHash signature (uint32, bands*rows values) of the text's word shingles; empty if it has no words."""
    return signature_of_words(normalized_words(text), cfg)


def signature_of_words(words: List[str], cfg: DedupConfig = DedupConfig()) -> np.ndarray:
    """num_perm values (at least bands*rows): banding uses the first bands*rows, verification all of them."""
    if not words:
        return np.zeros(0, dtype=np.uint32)
    bands, rows = banding(cfg)
    return signature_of_hashes(shingle_hashes(words, cfg.shingle_size), max(cfg.num_perm, bands * rows), cfg.seed)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal MinHash values: an unbiased estimate of the shingle sets' Jaccard similarity."""
    return float(np.mean(sig_a == sig_b))


# ------------------------------------------------------------------------------------------- banding
def s_curve(s, bands: int, rows: int):
    """Probability that two sets of Jaccard s share at least one band: 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


@lru_cache(maxsize=64)
def lsh_params(threshold: float = 0.8, num_perm: int = 128, fp_weight: float = 0.5,
               fn_weight: float = 0.5) -> Tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimizing the weighted false-positive area (S-curve below the
    threshold) plus false-negative area (1 - S-curve above it), as datasketch's `_optimal_param` does."""
    below = np.linspace(0.0, threshold, 401)
    above = np.linspace(threshold, 1.0, 401)
    best, best_err = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _trapezoid(s_curve(below, b, r), below)
            fn = _trapezoid(1.0 - s_curve(above, b, r), above)
            err = fp * fp_weight + fn * fn_weight
            if err < best_err:
                best, best_err = (b, r), err
    return best


@lru_cache(maxsize=64)
def lsh_params_for_recall(threshold: float = 0.8, num_perm: int = 128, min_recall: float = 0.95) -> Tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm and s_curve(threshold) >= min_recall that has the least
    false-positive area below the threshold (ties: more rows). Falls back to the most sensitive banding."""
    below = np.linspace(0.0, threshold, 401)
    best, best_fp = None, float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            if s_curve(threshold, b, r) >= min_recall:
                fp = _trapezoid(s_curve(below, b, r), below)
                if fp < best_fp - 1e-12:
                    best, best_fp = (b, r), fp
    return best or (num_perm, 1)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> List[Tuple[int, int]]:
    """(band index, 64-bit hash of that band's rows): documents sharing any key are LSH candidates."""
    if len(sig) < bands * rows:
        raise ValueError(f"signature has {len(sig)} values, banding needs {bands} x {rows}")
    raw = np.asarray(sig, dtype="<u4").tobytes()     # fixed byte order: same keys on every machine
    step = rows * 4
    return [(i, int.from_bytes(hashlib.blake2b(raw[i * step:(i + 1) * step], digest_size=8).digest(), "little"))
            for i in range(bands)]


# ------------------------------------------------------------------------------------------- per document
class Sketch(NamedTuple):
    """What dedup shuffles instead of a Document: its id, karma, exact fingerprint and MinHash signature."""
    doc_id: str
    karma: int
    fingerprint: str
    sig: bytes            # little-endian uint32 values; b"" for a text without words (never a near-duplicate)


def sketch(doc, cfg: DedupConfig = DedupConfig()) -> Sketch:
    """Normalize once, derive both the exact fingerprint and (if near dedup is on) the signature. A Document
    whose fingerprint was filled where it was extracted (pipeline/per_document.py) is taken as it is."""
    if doc.fingerprint:
        return Sketch(doc.doc_id, doc.karma, doc.fingerprint, doc.sig if cfg.near else b"")
    words = normalized_words(doc.text)
    sig = signature_of_words(words, cfg).astype("<u4").tobytes() if cfg.near else b""
    return Sketch(doc.doc_id, doc.karma, fingerprint_of_words(words), sig)


class Entry(NamedTuple):
    """A Sketch cut to what dedup needs, made where the document is sketched. `keys`: the band keys' hashes (8
    bytes per band, in band order), written to the LSH band files (dedup/bands.py) with the signature, where no
    payload file holds it (`sig`), else with `ref`, where to read it (core/payloads.py); the exact-dedup shuffle
    takes the id and karma only."""
    doc_id: str
    karma: int
    keys: bytes
    sig: bytes = b""
    ref: str = ""


def entry(sk: Sketch, bands: int, rows: int, ref: str = "") -> Entry:
    keys = (np.array([h for _, h in band_keys(sig_array(sk.sig), bands, rows)], dtype="<u8").tobytes()
            if sk.sig else b"")
    return Entry(sk.doc_id, sk.karma, keys, b"" if ref else sk.sig, ref)


def sig_array(sig: bytes) -> np.ndarray:
    return np.frombuffer(sig, dtype="<u4")


def banding(cfg: DedupConfig) -> Tuple[int, int]:
    """(bands, rows) of the LSH index: the config's override, or derived from threshold and num_perm."""
    if cfg.bands is not None:
        return cfg.bands, cfg.rows
    if cfg.verify_candidates:
        # Candidates are checked on the full signature, so a false candidate costs a comparison while a
        # missed pair is a duplicate left in: bias the banding toward recall.
        return lsh_params_for_recall(cfg.threshold, cfg.num_perm, cfg.min_recall)
    return lsh_params(cfg.threshold, cfg.num_perm)
