"""GPT-2's tokenizer files for a Hugging Face model directory, built offline from the tiktoken ranks webtext uses.

tiktoken's GPT-2 ranks are GPT-2's own encoder.json ids over raw bytes, and BPE merges in rank order, so the
merges are recovered exactly: for each token of two or more bytes, BPE over its bytes with only the lower ranks
ends in two parts, and that pair is its merge (merges.txt lists them in the rank order of the merged token).
vocab.json and merges.txt spell bytes with GPT-2's byte-to-unicode table. tokenizer.json is written directly
(the `tokenizers` format: byte-level BPE with GPT-2's split pattern), so no transformers import is needed here.
A test loads the directory with AutoTokenizer and pipeline() and checks its ids against tiktoken's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from core.tokenizer import EOT, get_encoding

SPECIAL = "<|endoftext|>"
FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character table (openai/gpt-2 encoder.py)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _bpe_parts(ranks: Dict[bytes, int], token: bytes, max_rank: int) -> List[bytes]:
    """BPE over `token`'s bytes merging only pairs whose merged rank is below max_rank (tiktoken's algorithm)."""
    parts = [bytes([b]) for b in token]
    while True:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best is None:
            return parts
        parts[best:best + 2] = [parts[best] + parts[best + 1]]


def recover_merges(ranks: Dict[bytes, int]) -> List[Tuple[bytes, bytes]]:
    """The merge pairs, in the rank order of the tokens they make."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = _bpe_parts(ranks, token, rank)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not one merge of two lower-rank tokens")
        merges.append((parts[0], parts[1]))
    return merges


def tokenizer_files(model_max_length: int) -> Dict[str, str]:
    """{file name: content} of GPT-2's tokenizer: vocab.json, merges.txt, tokenizer.json and the two configs."""
    enc = get_encoding()
    ranks = enc._mergeable_ranks   # the bytes -> rank table the Encoding was built from (no public accessor)
    table = bytes_to_unicode()
    spell = lambda b: "".join(table[x] for x in b)   # noqa: E731
    vocab = {spell(token): rank for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])}
    vocab[SPECIAL] = EOT
    merges = [f"{spell(a)} {spell(b)}" for a, b in recover_merges(ranks)]
    added = {"id": EOT, "content": SPECIAL, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": True, "special": True}
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [added], "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {"type": "ByteLevel", **byte_level, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": merges},
    }
    specials = {"bos_token": SPECIAL, "eos_token": SPECIAL, "unk_token": SPECIAL}
    config = {**specials, "add_prefix_space": False, "add_bos_token": False, "model_max_length": model_max_length,
              "tokenizer_class": "GPT2Tokenizer", "errors": "replace",
              # GPT-2's decode is exact: no " ." -> "." clean-up, so decode(encode(text)) == text as in tiktoken
              "clean_up_tokenization_spaces": False,
              "added_tokens_decoder": {str(EOT): {k: v for k, v in added.items() if k != "id"}}}
    dump = lambda value: json.dumps(value, ensure_ascii=False, indent=2) + "\n"   # noqa: E731
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False) + "\n",
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer.json": json.dumps(tokenizer, ensure_ascii=False) + "\n",
        "tokenizer_config.json": dump(config),
        "special_tokens_map.json": dump(specials),
    }


def write_tokenizer(directory: str | Path, model_max_length: int) -> None:
    for name, content in tokenizer_files(model_max_length).items():
        (Path(directory) / name).write_text(content, encoding="utf-8")
