"""The GPT-2 paper's 8-grams and Bloom filter, vectorized in numpy (used by `webtext shards overlap`, overlap.py).

Words are runs of lower-cased ASCII letters/digits and non-ASCII bytes (see overlap.py's docstring for the exact
normalization); an 8-gram is a 64-bit hash of its 8 word hashes; the Bloom filter is a bit array of
m = -n ln p / (ln 2)^2 bits probed k = (m / n) ln 2 times by double hashing.
"""
from __future__ import annotations

import math
from typing import Iterator, Tuple

import numpy as np

from core import shard_format as shards
from core.token_bytes import decode_bytes

NGRAM = 8
U64 = np.uint64
CHUNK_TOKENS = 1 << 21          # ~9 MB of text per step: every temporary array stays small
BATCH = 1 << 12                 # keys per Bloom filter call: its ~110K probes stay in cache between the gather,
                                # the scatter and the re-check (measured: ~1.6x faster inserts than 1 << 16)

# ------------------------------------------------------------------------------------------------ hashing
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A"):ord("Z") + 1] += 32
_WORD = np.zeros(256, bool)
for lo, hi in (("0", "9"), ("a", "z"), ("A", "Z")):
    _WORD[ord(lo):ord(hi) + 1] = True
_WORD[0x80:] = True             # UTF-8 bytes of non-ASCII characters; punctuation among them is removed below
_GRAM_MULT = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5,
                       0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB], U64)
_BASE = 0x9FB21C651E98DF25      # a large odd base: with 31, "25" and "p3" collide (50 + 53*31 == 112 + 51*31)
_POWERS = np.ones(1, U64)       # _BASE**i mod 2**64, grown on demand


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection on uint64 that spreads every input bit over the output."""
    x = x ^ (x >> U64(30))
    x = x * U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> U64(27))
    x = x * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


def _powers(n: int) -> np.ndarray:
    global _POWERS
    if len(_POWERS) < n:
        p = np.full(max(n, 2 * len(_POWERS)), _BASE, U64)
        p[0] = 1
        _POWERS = np.cumprod(p, dtype=U64)     # wraps mod 2**64, which is the point
    return _POWERS


def word_mask(data: np.ndarray) -> np.ndarray:
    """bool per byte: part of a word after normalization."""
    mask = _WORD[data]
    # Unicode punctuation separates words: U+0080-U+00BF (C2 xx), U+2000-U+207F (E2 80/81 xx), U+3000-U+303F (E3 80 xx)
    for lead, seconds, length in ((0xC2, (), 2), (0xE2, (0x80, 0x81), 3), (0xE3, (0x80,), 3)):
        at = np.flatnonzero(data[:len(data) - length + 1] == lead)
        if seconds:
            at = at[np.isin(data[at + 1], seconds)]
        for j in range(length):
            mask[at + j] = False
    return mask


def word_hashes(data: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes (N,) -> (64-bit hash of each normalized word (W,), byte offset of each word's start (W,))."""
    idx = np.flatnonzero(word_mask(data))                       # byte positions of word characters
    if len(idx) == 0:
        return np.zeros(0, U64), np.zeros(0, np.int64)
    first = np.ones(len(idx), bool)
    first[1:] = idx[1:] != idx[:-1] + 1                          # a word starts where the run breaks
    starts = np.flatnonzero(first)                               # (W,) index into idx
    word_of = np.cumsum(first, dtype=np.int64) - 1
    pos = np.arange(len(idx), dtype=np.int64) - starts[word_of]  # position of each byte inside its word
    lengths = np.diff(np.append(starts, len(idx)))
    terms = _LOWER[data[idx]].astype(U64) * _powers(int(lengths.max()))[pos]
    h = np.add.reduceat(terms, starts)                           # sum b_j BASE^j over the word, mod 2**64
    return mix64(h + lengths.astype(U64) * U64(0x9E3779B97F4A7C15)), idx[starts]


def gram_hashes(words: np.ndarray, doc_of_word: np.ndarray, n: int = NGRAM) -> Tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of every n-gram of consecutive words inside one document, its document)."""
    count = len(words) - n + 1
    if count <= 0:
        return np.zeros(0, U64), np.zeros(0, np.int64)
    g = words[:count] * _GRAM_MULT[0]
    for k in range(1, n):                                        # order-sensitive: a different odd constant per slot
        g += words[k:k + count] * _GRAM_MULT[k]
    same_doc = doc_of_word[:count] == doc_of_word[n - 1:]
    return mix64(g)[same_doc], doc_of_word[:count][same_doc]


def text_grams(data: bytes, piece: int = 1 << 24) -> np.ndarray:
    """8-gram hashes of one text (a test file: one document), hashed in ~16 MB pieces cut at a space or newline
    (never inside a word), so a large file needs ~8 bytes per word, not ~40 per byte."""
    buf = np.frombuffer(data, np.uint8)
    words, start = [], 0
    while start < len(buf):
        end = min(start + piece, len(buf))
        if end < len(buf):
            cut = np.flatnonzero(np.isin(buf[end:end + (1 << 20)], (0x20, 0x0A)))
            end = end + int(cut[0]) if len(cut) else min(end + (1 << 20), len(buf))
        words.append(word_hashes(buf[start:end])[0])
        start = end
    words = np.concatenate(words) if words else np.zeros(0, U64)
    return gram_hashes(words, np.zeros(len(words), np.int64))[0]


def shard_chunks(path, chunk_tokens: int = CHUNK_TOKENS) -> Iterator[Tuple[np.ndarray, np.ndarray, int]]:
    """(tokens, document offsets into them, index of the first document) in runs of whole documents."""
    tokens, offsets = shards.shard_tokens(path)
    doc = 0
    while doc < len(offsets) - 1:
        end = int(np.searchsorted(offsets, offsets[doc] + chunk_tokens, side="right")) - 1
        end = max(end, doc + 1)                                  # a document longer than a chunk goes alone
        yield tokens[offsets[doc]:offsets[end]], offsets[doc:end + 1] - offsets[doc], doc
        doc = end


def chunk_grams(tokens: np.ndarray, offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """(8-gram hashes, document of each (0-based in the chunk), text bytes) of a run of whole documents."""
    data, starts = decode_bytes(tokens, eot_bytes=b"\n")        # EOT becomes a separator
    words, word_start = word_hashes(data)
    doc_of_word = np.searchsorted(starts[offsets], word_start, side="right") - 1
    grams, docs = gram_hashes(words, doc_of_word)
    return grams, docs, len(data)


# ------------------------------------------------------------------------------------------------ Bloom filter
class BloomFilter:
    """A standard Bloom filter over uint64 keys: m bits (numpy uint64 words), k probes by double hashing.

    With partitions=P the bits are P equal filters and a key (by an independent hash) uses one of them: the same
    false-positive rate (each holds ~n/P keys in m/P bits), and P processes can fill it in parallel, each writing
    only its own partition (no two processes ever write one word). shared=True puts the bits in shared memory
    so that forked workers fill the parent's filter."""

    def __init__(self, capacity: int, fpr: float = 1e-8, partitions: int = 1, shared: bool = False, k: int = 0):
        capacity = max(int(capacity), 1)
        m, _ = filter_size(capacity, fpr, k)
        self.partitions = partitions
        self.mp = max(64, -(-m // (64 * partitions)) * 64)        # bits per partition, whole uint64 words
        self.m = self.mp * partitions
        self.k = k or max(1, round(self.m / capacity * math.log(2)))
        self.capacity, self.design_fpr = capacity, fpr
        self.words = _huge_zeros(self.m // 64, shared)
        self._ks = np.arange(self.k, dtype=U64)

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    def partition_of(self, keys: np.ndarray) -> np.ndarray:
        if self.partitions == 1:
            return np.zeros(len(keys), U64)
        h = mix64(keys ^ U64(0x2545F4914F6CDD1D)) >> U64(11)       # independent of the probe positions
        return (h.astype(np.float64) * (self.partitions / 2.0 ** 53)).astype(U64)

    def _probes(self, keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(word index, bit mask) of each key's k probes, (N*k,), a key's probes side by side."""
        h2 = mix64(keys ^ U64(0x5BD1E9955BD1E995)) | U64(1)     # odd step: the k probes are distinct mod 2**64
        g = keys[:, None] + h2[:, None] * self._ks[None, :]     # (N, k) Kirsch-Mitzenmacher double hashing
        # Range reduction by multiplication (no 64-bit modulo): top 53 bits as a fraction of the partition.
        pos = ((g >> U64(11)).astype(np.float64) * (self.mp / 2.0 ** 53)).astype(U64)
        np.minimum(pos, U64(self.mp - 1), out=pos)
        if self.partitions > 1:
            pos += (self.partition_of(keys) * U64(self.mp))[:, None]
        pos = pos.ravel()
        return pos >> U64(6), U64(1) << (pos & U64(63))

    def add(self, keys: np.ndarray) -> None:
        for i in range(0, len(keys), BATCH):
            w, bit = self._probes(keys[i:i + BATCH])
            # Scatter-OR; two probes of one batch in the same word with different bits keep only the last one
            # written, so re-check and redo the lost ones (rare: a few per batch in a large filter).
            while len(w):
                self.words[w] |= bit
                lost = (self.words[w] & bit) == 0
                w, bit = w[lost], bit[lost]

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Probe by probe, keeping only the keys that passed so far: a non-member is usually out after one or
        two probes, so a test set of mostly unseen text costs ~2 memory reads per key instead of k."""
        out = np.zeros(len(keys), bool)
        for i in range(0, len(keys), BATCH):
            w, bit = self._probes(keys[i:i + BATCH])
            w, bit = w.reshape(-1, self.k).T.copy(), bit.reshape(-1, self.k).T.copy()   # (k, N): probe-major
            alive = np.arange(w.shape[1])
            for j in range(self.k):
                wj, bj = (w[j], bit[j]) if len(alive) == w.shape[1] else (w[j, alive], bit[j, alive])
                alive = alive[(self.words[wj] & bj) != 0]
            out[i + alive] = True
        return out

    def fill(self) -> float:
        return int(np.bitwise_count(self.words).sum(dtype=np.int64)) / self.m

    def fpr(self) -> float:
        """The false-positive rate of this filter as filled: (fraction of bits set)^k."""
        return self.fill() ** self.k


def _huge_zeros(n: int, shared: bool = False) -> np.ndarray:
    """n zeroed uint64 words, on transparent huge pages where the kernel allows: every probe is a random access,
    and with 4 KiB pages each one also misses the TLB (measured here: 2-3x slower gathers into 512 MiB). Shared
    memory gets huge pages only where /sys/kernel/mm/transparent_hugepage/shmem_enabled allows."""
    import mmap

    if n * 8 < 1 << 26 and not shared:   # small filters live in the caches anyway
        return np.zeros(n, U64)
    flags = (mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE) | mmap.MAP_ANONYMOUS
    mm = mmap.mmap(-1, max(n, 1) * 8, flags=flags)   # zero-filled, lazily
    if hasattr(mmap, "MADV_HUGEPAGE"):
        mm.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mm, U64)[:n]


def filter_size(n: float, fpr: float = 1e-8, k: int = 0) -> Tuple[int, int]:
    """(bits, probes) of the smallest filter for n keys at false-positive rate fpr: m = -n ln p / (ln 2)^2 with
    k = (m / n) ln 2; or, for a given k, the m where (1 - e^(-kn/m))^k = p. Fewer probes than optimal cost little
    memory (the rate is flat near the optimum) and save time: every probe is a random memory access. For
    p = 1e-8: k = 27 needs 38.3 bits per key, k = 16 42.0 (+9%), k = 12 49.6 (+30%)."""
    if k:
        return math.ceil(-k * n / math.log(1 - fpr ** (1 / k))), k
    m = math.ceil(-n * math.log(fpr) / math.log(2) ** 2)
    return m, max(1, round(m / n * math.log(2)))
