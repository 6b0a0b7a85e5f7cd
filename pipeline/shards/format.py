"""Arrow shards: the contract between the pipeline and the trainer (see docs/shard-format.md).

Arrow IPC *file* format (memory-mappable, random access), one row per document, sorted by doc_id:
    doc_id: string (16 hex) | url: string | tokens: list<uint16> (ends with EOT) | karma: int64 |
    subreddits: list<string> | created_utc: int64
Schema metadata: tokenizer, vocab_sha256, eot, vocab_size, format_version. Names `{split}-{i:05d}-of-{n:05d}.arrow`.
A `manifest.json` written last lists every shard (docs, tokens, bytes, sha256) with the run's config and stats.
Files are written under a temporary name and renamed, so a reader never sees a torn shard.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterable, List, NamedTuple, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files
from pipeline.shards.tokenize import EOT, VOCAB_SIZE, tokenizer_metadata

FORMAT_VERSION = 1
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


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.arrow"


def _split_hash(doc_id: str) -> int:
    # A hash independent of the shard index (which uses doc_id itself), so split and shard do not correlate.
    return int.from_bytes(hashlib.blake2b(f"split:{doc_id}".encode(), digest_size=8).digest(), "big")


def assign_shard(doc_id: str, val_fraction: float, train_shards: int, val_shards: int) -> Tuple[str, int]:
    """(split, shard index) chosen by hash of doc_id: stable across runs and runners."""
    split = "val" if (_split_hash(doc_id) % 1_000_000) < val_fraction * 1_000_000 else "train"
    n = val_shards if split == "val" else train_shards
    return split, int(doc_id, 16) % n


def schema_with_metadata() -> pa.Schema:
    meta = dict(tokenizer_metadata(), format_version=str(FORMAT_VERSION))
    return SCHEMA.with_metadata({k: str(v) for k, v in meta.items()})


def shard_bytes(docs: Iterable[TokenizedDoc]) -> Tuple[bytes, int, int]:
    """Serialize docs (sorted by doc_id) into one Arrow IPC file in memory: (bytes, docs, tokens)."""
    docs = sorted(docs, key=lambda d: (d.doc_id, d.url))   # url breaks (unlikely) id ties: order stays total
    lengths = np.fromiter((len(d.tokens) for d in docs), dtype=np.int64, count=len(docs))
    if lengths.sum() > np.iinfo(np.int32).max:   # list<uint16> offsets are int32
        raise ValueError(f"a shard would hold {int(lengths.sum()):,} tokens (> 2**31): raise shards.train_shards")
    offsets = np.zeros(len(docs) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(d.tokens, dtype=np.uint16) for d in docs]) if docs else np.zeros(0, np.uint16)
    batch = pa.record_batch([
        pa.array([d.doc_id for d in docs], pa.string()),
        pa.array([d.url for d in docs], pa.string()),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint16())),
        pa.array([int(d.karma) for d in docs], pa.int64()),
        pa.array([list(d.subreddits) for d in docs], pa.list_(pa.string())),
        pa.array([int(d.created_utc) for d in docs], pa.int64()),
    ], schema=schema_with_metadata())
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, batch.schema) as writer:   # one record batch: the tokens column is one flat buffer
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes(), len(docs), int(lengths.sum())


def write_shard(out_dir: str, split: str, index: int, num_shards: int, docs: Iterable[TokenizedDoc]) -> ShardInfo:
    """Write one shard atomically; same inputs -> same bytes."""
    data, n_docs, n_tokens = shard_bytes(docs)
    name = shard_name(split, index, num_shards)
    files.write_atomic(files.join(out_dir, name), data)   # a retried bundle simply replaces it
    return ShardInfo(name, split, index, num_shards, n_docs, n_tokens, len(data), hashlib.sha256(data).hexdigest())


def write_manifest(out_dir: str, shards: Sequence[ShardInfo], config: dict, stats: dict | None = None) -> dict:
    shards = sorted(shards, key=lambda s: (SPLITS.index(s.split), s.index))
    manifest = {
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer_metadata(),
        "totals": {split: {"shards": sum(1 for s in shards if s.split == split),
                           "docs": sum(s.docs for s in shards if s.split == split),
                           "tokens": sum(s.tokens for s in shards if s.split == split)} for split in SPLITS},
        "shards": [s._asdict() for s in shards],
        "config": config,
        "stats": stats or {},
    }
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
    if files.is_local(str(path)):
        return ipc.open_file(pa.memory_map(str(path).removeprefix("file://"), "r")).read_all()
    with files.open_read(str(path)) as f:
        return ipc.open_file(pa.py_buffer(f.read())).read_all()


def file_sha256(path) -> str:
    """sha256 of a file, streamed (shards can be larger than memory)."""
    h = hashlib.sha256()
    with files.open_read(str(path)) as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def shard_tokens(path) -> Tuple[np.ndarray, np.ndarray]:
    """(flat uint16 tokens viewing the memory map, int64 document offsets of length docs+1)."""
    col = open_shard(path).column("tokens")
    if col.num_chunks == 0:
        return np.zeros(0, np.uint16), np.zeros(1, np.int64)
    if col.num_chunks != 1:
        raise ValueError(f"{path}: expected one record batch per shard, found {col.num_chunks}")
    lists = col.chunk(0)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    tokens = lists.values.to_numpy(zero_copy_only=True)[offsets[0]:offsets[-1]]
    return tokens, offsets - offsets[0]


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
            tokens, offsets = shard_tokens(path)
        except (pa.ArrowException, ValueError, OSError) as e:
            problems.append(f"{s['name']}: unreadable Arrow file ({e})")
            continue
        if not table.schema.remove_metadata().equals(SCHEMA.remove_metadata()):
            problems.append(f"{s['name']}: schema differs from the shard contract")
        meta = table.schema.metadata or {}
        for k, v in expected_meta.items():
            if meta.get(k) != v:
                problems.append(f"{s['name']}: metadata {k.decode()}={meta.get(k)!r}, expected {v.decode()!r}")
        if table.num_rows != s["docs"] or len(tokens) != s["tokens"]:
            problems.append(f"{s['name']}: {table.num_rows} docs / {len(tokens)} tokens, manifest says "
                            f"{s['docs']} / {s['tokens']}")
        if len(tokens) and int(tokens.max()) >= VOCAB_SIZE:
            problems.append(f"{s['name']}: token id {int(tokens.max())} >= vocab size {VOCAB_SIZE}")
        ends = offsets[1:] - 1
        if len(ends) and (np.diff(offsets) <= 0).any():
            problems.append(f"{s['name']}: empty document")
        elif len(ends) and (tokens[ends] != EOT).any():
            problems.append(f"{s['name']}: {int((tokens[ends] != EOT).sum())} documents do not end with EOT")
        elif int((tokens == EOT).sum()) != len(ends):
            problems.append(f"{s['name']}: EOT inside a document (EOT count != document count)")
        ids = table.column("doc_id").to_pylist()
        if ids != sorted(ids):
            problems.append(f"{s['name']}: rows not sorted by doc_id")
    for path in files.match(files.join(str(data_dir), "*.arrow")):
        name = path.rsplit("/", 1)[-1]
        if name not in listed:
            problems.append(f"{name}: shard on disk but not in the manifest")
    return problems
