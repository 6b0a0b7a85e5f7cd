"""Vectorized GPT-2 detokenization: token ids -> UTF-8 bytes with numpy, no Python loop per token.

BPE decoding is concatenation: the bytes of a token sequence are the bytes of each token, back to back. So one
lookup table (all 50,257 tokens' bytes in one buffer plus offsets) and a gather turn a shard's flat uint16 tokens
into its text bytes at memory speed; tiktoken's `decode` would need a Python list of ints first.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

from core.tokenizer import EOT, VOCAB_SIZE, get_encoding

PIECE = 1 << 20   # tokens decoded per step (~5 MB of text; ~120 MB of temporaries)


@lru_cache(maxsize=4)
def vocab_table(eot_bytes: bytes = b"") -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 bytes of every token back to back, int64 offsets of length V+1). EOT decodes to `eot_bytes`
    (empty: documents keep only their own text; b"\\n": a separator)."""
    enc = get_encoding()
    pieces = [enc.decode_single_token_bytes(i) if i != EOT else eot_bytes for i in range(VOCAB_SIZE)]
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=VOCAB_SIZE)
    offsets = np.zeros(VOCAB_SIZE + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(b"".join(pieces), np.uint8), offsets


def decode_bytes(tokens: np.ndarray, eot_bytes: bytes = b"") -> Tuple[np.ndarray, np.ndarray]:
    """tokens (N,) uint16 -> (uint8 bytes (M,), int64 byte offset of each token (N+1,)). Token i's bytes are
    out[starts[i]:starts[i+1]], so document offsets in tokens map to byte offsets by indexing `starts`."""
    table, toff = vocab_table(eot_bytes)
    tokens = np.asarray(tokens)
    lengths = np.diff(toff)[tokens]                                # (N,) bytes per token
    starts = np.zeros(len(tokens) + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    out = np.empty(int(starts[-1]), np.uint8)
    for a in range(0, len(tokens), PIECE):   # int64 index temporaries for PIECE tokens at a time, not for all
        t, lo, hi = tokens[a:a + PIECE].astype(np.int64), starts[a], starts[min(a + PIECE, len(tokens))]
        # Byte j of the output is table[toff[token(j)] + (j - starts[token(j)])]: one repeat and one gather.
        src = np.repeat(toff[t] - starts[a:a + len(t)], lengths[a:a + len(t)]) + np.arange(lo, hi, dtype=np.int64)
        out[lo:hi] = table[src]
    return out, starts
