"""Arrow shards: the contract between the pipeline and the trainer (see docs/shard-format.md).

Arrow IPC *file* format (memory-mappable, random access), one row per document, sorted by doc_id:
    doc_id: string (16 hex) | url: string | tokens: list<uint16> (ends with EOT) | karma: int64 |
    subreddits: list<string> | created_utc: int64
Schema metadata: tokenizer, vocab_sha256, eot, vocab_size, format_version. Names `data/{split}-{i:05d}-of-{n:05d}.arrow`;
a generation added later to the corpus (`webtext run --add-to`) writes `data/{split}-g{gen:05d}-{i:05d}-of-{n:05d}.arrow`.
A shard is a contiguous doc_id range, sized by tokens (plan_shards), written as record batches of a bounded
number of tokens (each batch has its own int32 list offsets, so no shard size reaches the 2**31 limit).
A `manifest.json` written last lists every shard (docs, tokens, bytes, sha256) with the run's config and stats.
Files are written under a temporary name and renamed, so a reader never sees a torn shard.
This module is the contract both sides import (train/ imports only core/); the shard files themselves are
written by pipeline/shards/assemble.py.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files
from core.tokenizer import EOT, VOCAB_SIZE, tokenizer_metadata

FORMAT_VERSION = 2     # 2: shards in data/ (1: beside manifest.json; still read)
MANIFEST = "manifest.json"
SPLITS = ("train", "val")

SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("url", pa.string(), nullable=False),
    pa.field("tokens", pa.list_(pa.uint16()), nullable=False),
    pa.field("karma", pa.int64()),
    pa.field("subreddits", pa.list_(pa.string())),
    pa.field("created_utc", pa.int64()),
])


class TokenizedDoc(NamedTuple):
    doc_id: str
    url: str
    tokens: np.ndarray          # uint16, ends with EOT
    karma: int
    subreddits: Tuple[str, ...]
    created_utc: int


class ShardInfo(NamedTuple):
    name: str
    split: str
    index: int
    num_shards: int
    docs: int
    tokens: int
    bytes: int
    sha256: str
    generation: int = 0      # 0: the corpus's first build; k: its k-th `--add-to`


# Format 2 keeps the shards in data/ (the Hub's layout: the card README.md on top, data files in their own folder,
# so pyarrow.dataset, datasets.load_dataset, Polars and DuckDB open them as they are); format 1 kept them beside
# manifest.json. A manifest names each shard by its path in the directory, so readers take both.
DATA_DIR = "data"
SHARD_NAME = re.compile(r"(?:data/)?(train|val)(?:-g\d{5})?-\d{5}-of-\d{5}\.arrow")   # what webtext writes


def shard_name(split: str, index: int, num_shards: int, generation: int = 0) -> str:
    gen = f"-g{generation:05d}" if generation else ""
    return f"{DATA_DIR}/{split}{gen}-{index:05d}-of-{num_shards:05d}.arrow"


def _split_hash(doc_id: str) -> int:
    # A hash independent of the bucket (which uses doc_id itself), so split and shard do not correlate.
    return int.from_bytes(hashlib.blake2b(f"split:{doc_id}".encode(), digest_size=8).digest(), "big")


def split_of(doc_id: str, val_fraction: float) -> str:
    """"train" or "val", by hash of doc_id: stable across runs and runners."""
    return "val" if (_split_hash(doc_id) % 1_000_000) < val_fraction * 1_000_000 else "train"


def bucket_of(doc_id: str, buckets: int) -> int:
    """The doc_id range (of `buckets` equal ones) a document falls in. Monotone in doc_id, so consecutive buckets
    are consecutive doc_id ranges and a shard packed from them is one range too."""
    return (int(doc_id, 16) * buckets) >> 64


def plan_shards(bucket_tokens: Dict[Tuple[str, int], int], target_tokens: int) -> dict:
    """Shards from tokens per (split, bucket): buckets are packed in order, a new shard starting when the next
    bucket would take the current one past `target_tokens` (a bucket is never split, so one bucket bigger than
    the target is a shard of its own). A pure function of the totals: every runner derives the same plan.
    Returns {"shard": {(split, bucket): index}, "num_shards": {split: n}}; every split has >= 1 shard."""
    plan: dict = {"shard": {}, "num_shards": {}}
    for split in SPLITS:
        index, filled = 0, 0
        for bucket in sorted(b for s, b in bucket_tokens if s == split):
            tokens = bucket_tokens[(split, bucket)]
            if filled and filled + tokens > target_tokens:
                index, filled = index + 1, 0
            plan["shard"][(split, bucket)] = index
            filled += tokens
        plan["num_shards"][split] = index + 1
    return plan


def schema_with_metadata() -> pa.Schema:
    meta = dict(tokenizer_metadata(), format_version=str(FORMAT_VERSION))
    return SCHEMA.with_metadata({k: str(v) for k, v in meta.items()})


def write_manifest(out_dir: str, shards: Sequence[ShardInfo], config: dict, stats: dict | None = None,
                   generations: list | None = None) -> dict:
    """manifest.json, atomically. `generations` (a corpus grown with --add-to): one entry per generation, and
    `shards` lists every generation's shards, so every reader of the manifest sees one corpus."""
    shards = sorted(shards, key=lambda s: (s.generation, SPLITS.index(s.split), s.index))
    manifest = {
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer_metadata(),
        "totals": {split: {"shards": sum(1 for s in shards if s.split == split),
                           "docs": sum(s.docs for s in shards if s.split == split),
                           "tokens": sum(s.tokens for s in shards if s.split == split)} for split in SPLITS},
        "shards": [{k: v for k, v in s._asdict().items() if k != "generation" or v} for s in shards],
        "config": config,
        "stats": stats or {},
    }
    if generations:
        manifest["generations"] = generations
    files.write_atomic(files.join(out_dir, MANIFEST), json.dumps(manifest, indent=2).encode())
    return manifest


def add_stats_to_manifest(out_dir: str, stats: dict) -> None:
    """Fold the run's stats into manifest.json after the pipeline, keeping it the last file written."""
    path = files.join(out_dir, MANIFEST)
    if files.exists(path):
        manifest = json.loads(files.read_bytes(path))
        manifest["stats"] = stats
        files.write_atomic(path, json.dumps(manifest, indent=2).encode())


# ------------------------------------------------------------------------------------------------ reading
# Every reader goes through core.files (Beam's FileSystems): a shard directory may be local or gs://...
def read_manifest(data_dir) -> dict:
    path = files.join(str(data_dir), MANIFEST)
    if not files.exists(path):
        raise FileNotFoundError(f"no {MANIFEST} in {data_dir}: point at a directory written by `webtext run`")
    return json.loads(files.read_bytes(path))


def shard_paths(data_dir, split: str) -> List[str]:
    return [files.join(str(data_dir), s["name"]) for s in read_manifest(data_dir)["shards"] if s["split"] == split]


def open_shard(path) -> pa.Table:
    """The shard as a Table: backed by a memory map when local (no copy of the token data), read through Beam's
    FileSystems otherwise."""
    return files.read_arrow(path)


def file_sha256(path) -> str:
    """sha256 of a file, streamed (shards can be larger than memory)."""
    h = hashlib.sha256()
    with files.open_read(str(path)) as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def shard_token_batches(path) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Per record batch: (flat uint16 tokens viewing the memory map, int64 document offsets of length docs+1).
    A shard is written as several record batches (each has its own int32 offsets), so its tokens are one flat
    buffer per batch, never copied: this is what the trainer reads."""
    out = []
    for lists in open_shard(path).column("tokens").chunks:
        offsets = lists.offsets.to_numpy().astype(np.int64)
        tokens = lists.values.to_numpy(zero_copy_only=True)[offsets[0]:offsets[-1]]
        out.append((tokens, offsets - offsets[0]))
    return out


def shard_tokens(path) -> Tuple[np.ndarray, np.ndarray]:
    """(flat uint16 tokens, int64 document offsets of length docs+1) of the whole shard: a view on the memory map
    when the shard is one record batch, a concatenated copy when it has several (use shard_token_batches to
    avoid the copy)."""
    parts = shard_token_batches(path)
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, np.uint16), np.zeros(1, np.int64)
    starts = np.cumsum([0] + [len(t) for t, _ in parts[:-1]])
    offsets = np.concatenate([[0]] + [o[1:] + s for (_, o), s in zip(parts, starts)])
    return np.concatenate([t for t, _ in parts]), offsets


def verify(data_dir) -> List[str]:
    """Every problem found in a shard directory, one line each (empty list: all good)."""
    problems = []
    try:
        manifest = read_manifest(data_dir)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        return [str(e)]
    expected_meta = {k.encode(): str(v).encode() for k, v in tokenizer_metadata().items()}
    listed = set()
    for s in manifest.get("shards", []):
        if not isinstance(s, dict) or not {"name", "sha256", "docs", "tokens"} <= set(s):
            problems.append(f"manifest entry {s!r:.80} lacks name/sha256/docs/tokens")
            continue
        listed.add(s["name"])
        path = files.join(str(data_dir), s["name"])
        if not files.exists(path):
            problems.append(f"{s['name']}: missing")
            continue
        if file_sha256(path) != s["sha256"]:
            problems.append(f"{s['name']}: sha256 does not match the manifest (corrupt or changed file)")
            continue
        try:
            table = open_shard(path)
            table.validate(full=True)           # offsets inside their buffers: the checks below index with them
            parts = shard_token_batches(path)   # checked batch by batch: no copy of the shard's tokens
        except (pa.ArrowException, ValueError, OSError) as e:
            problems.append(f"{s['name']}: unreadable Arrow file ({e})")
            continue
        if not table.schema.remove_metadata().equals(SCHEMA.remove_metadata()):
            problems.append(f"{s['name']}: schema differs from the shard contract")
        meta = table.schema.metadata or {}
        for k, v in expected_meta.items():
            if meta.get(k) != v:
                problems.append(f"{s['name']}: metadata {k.decode()}={meta.get(k)!r}, expected {v.decode()!r}")
        n_tokens = sum(len(t) for t, _ in parts)
        if table.num_rows != s["docs"] or n_tokens != s["tokens"]:
            problems.append(f"{s['name']}: {table.num_rows} docs / {n_tokens} tokens, manifest says "
                            f"{s['docs']} / {s['tokens']}")
        top = max((int(t.max()) for t, _ in parts if len(t)), default=0)
        if top >= VOCAB_SIZE:
            problems.append(f"{s['name']}: token id {top} >= vocab size {VOCAB_SIZE}")
        empty = sum(int((np.diff(o) <= 0).sum()) for _, o in parts)
        no_eot = sum(int((t[o[1:] - 1] != EOT).sum()) for t, o in parts if len(o) > 1 and not (np.diff(o) <= 0).any())
        inner = sum(int((t == EOT).sum()) - (len(o) - 1) for t, o in parts)
        if empty:
            problems.append(f"{s['name']}: empty document")
        elif no_eot:
            problems.append(f"{s['name']}: {no_eot} documents do not end with EOT")
        elif inner:
            problems.append(f"{s['name']}: EOT inside a document (EOT count != document count)")
        ids = table.column("doc_id").to_pylist()
        if ids != sorted(ids):
            problems.append(f"{s['name']}: rows not sorted by doc_id")
    for prefix in ("", f"{DATA_DIR}/"):   # format 1's place and format 2's
        for path in files.match(files.join(str(data_dir), f"{prefix}*.arrow")):
            name = prefix + path.rsplit("/", 1)[-1]
            if name in listed:
                continue
            problems.append(f"{name}: shard on disk but not in the manifest")
    return problems
