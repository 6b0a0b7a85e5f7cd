"""A corpus's sketch index: what deduplicating new documents against a corpus needs, without its text or tokens.

One folder per generation of the corpus (the first build is generation 0; each `webtext run --add-to` adds one):

    <corpus>/_index/<generation:05d>/sketches.arrow   every document that reached dedup in that generation
        doc_id string | karma int64 | fingerprint string | sig binary (uint32 LE) | kept bool
        metadata: the dedup parameters its signatures and band keys were made with
    <corpus>/_index/<generation:05d>/band_keys.npy, band_rows.npy   (band, hash) keys of every row, as one
        uint64 per key (the band mixed in), sorted, with the row each belongs to: an LSH lookup is a binary search
    <corpus>/_index/<generation:05d>/fp_keys.npy, fp_rows.npy       the exact fingerprints' first 64 bits, sorted

Dropped documents are in it too (kept = false): a new document that is a near-duplicate of an old one that was
itself removed is in the same cluster as that old one's survivor, as a single build of both would find.
The .npy files are memory-mapped where the corpus is local, so a lookup touches a few pages, not the index.
Written whole or not at all (core.files), and only after the generation's shards: a generation listed in the
manifest always has its index.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterable, List, NamedTuple, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files
from dedup.config import DedupConfig
from dedup.minhash import Entry, band_keys, banding, sig_array

INDEX_DIR = "_index"
SKETCHES = "sketches.arrow"
SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("karma", pa.int64(), nullable=False),
    pa.field("fingerprint", pa.string(), nullable=False),
    pa.field("sig", pa.binary(), nullable=False),
    pa.field("kept", pa.bool_(), nullable=False),
])
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)   # (band, hash) -> one uint64; a rare collision only adds a candidate
# What makes two signatures comparable: an index made with other values cannot be matched against.
PARAMS = ("num_perm", "seed", "shingle_size", "threshold", "bands", "rows")


def generation_dir(corpus: str, generation: int) -> str:
    return files.join(str(corpus), INDEX_DIR, f"{generation:05d}")


def params_of(cfg: DedupConfig) -> dict:
    bands, rows = banding(cfg)
    return {"num_perm": cfg.num_perm, "seed": cfg.seed, "shingle_size": cfg.shingle_size,
            "threshold": cfg.threshold, "bands": bands, "rows": rows}


def mixed_keys(keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(n, bands) uint64 band hashes -> (n, bands) uint64 keys with the band index mixed in (into `out` if given,
    e.g. `keys` itself)."""
    band = np.arange(keys.shape[1], dtype=np.uint64) * _BAND_MIX
    return np.bitwise_xor(keys, band, out=out)


def fp_key(fingerprints: Iterable[str]) -> np.ndarray:
    return np.fromiter((int(f[:16] or "0", 16) for f in fingerprints), dtype=np.uint64)


def id_keys(doc_ids) -> np.ndarray:
    """doc_ids (16 hex characters, as core.records.doc_id_for makes them) -> their 64-bit values, the keys the URL
    index (crawl/seen.py) uses too. 8 bytes a document where a Python set or dict of the strings holds ~0.1 KB."""
    doc_ids = list(doc_ids)
    if all(len(d) == 16 for d in doc_ids):
        try:
            return np.frombuffer(bytes.fromhex("".join(doc_ids)), dtype=">u8").astype(np.uint64)
        except ValueError:
            pass
    return np.fromiter((int(d, 16) for d in doc_ids), dtype=np.uint64, count=len(doc_ids))   # raises for any other


def _save_npy(path: str, array: np.ndarray) -> None:
    if files.is_local(path):    # straight into the file: an index can be as large as the memory it is made in
        with files.replacing(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        return
    import io
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    files.write_atomic(path, buf.getvalue())


def table_of(rows: Iterable[Tuple[str, int, str, bytes, bool]]) -> pa.Table:
    """(doc_id, karma, fingerprint, sig, kept) rows as one table of the index's columns."""
    rows = list(rows)
    return pa.table([pa.array([r[i] for r in rows], f.type) for i, f in enumerate(SCHEMA)], schema=SCHEMA)


def _band_block(sigs: pa.Array, bands: int, rows: int) -> Tuple[np.ndarray, np.ndarray]:
    """One table's signatures -> ((k, bands) uint64 band hashes, (k,) row numbers) for its k rows that have a
    signature (a text without words has none, and no bands)."""
    sigs = sigs.to_pylist()
    have = [i for i, sig in enumerate(sigs) if len(sig) >= 4 * bands * rows]
    block = np.empty((len(have), bands), dtype=np.uint64)
    for j, i in enumerate(have):
        block[j] = [h for _, h in band_keys(sig_array(sigs[i]), bands, rows)]
    return block, np.array(have, dtype=np.int64)


def write(directory: str, tables: Iterable, cfg: DedupConfig, chunk: int = 4096, unique: bool = False) -> int:
    """Write one generation's index from tables of (doc_id, karma, fingerprint, sig, kept), streamed: the Arrow
    file is written one table at a time and holds rows in the order given (a doc_id seen before is skipped: a
    retried bundle's payload file; `unique`: the caller has left those out already, and no set of ids is kept).
    Held until the end, to be sorted: the band keys (8 bytes each) and fingerprint keys, as arrays; the sort
    then needs ~3x the band keys (keys, their order, the sorted copy): ~0.3 KB per document at 13 bands. Rows
    given as (doc_id, karma, fingerprint, sig, kept) tuples are taken `chunk` at a time. Returns the number of
    documents."""
    tables = _as_tables(tables, chunk)
    params = params_of(cfg)
    bands, rows_per_band = params["bands"], params["rows"]
    schema = SCHEMA.with_metadata({"params": json.dumps(params, sort_keys=True)})
    seen = None if unique else set()
    blocks, block_rows, fps, n = [], [], [], 0
    with files.replacing(files.join(directory, SKETCHES)) as tmp, ipc.new_file(tmp, schema) as writer:
        for table in tables:
            if seen is not None:
                ids = table.column("doc_id").to_pylist()
                fresh = [i for i, d in enumerate(ids) if not (d in seen or seen.add(d))]
                if not fresh:
                    continue
                table = table.take(pa.array(fresh, pa.int64()))
            table = table.select(SCHEMA.names).cast(SCHEMA)
            block, rows = _band_block(table.column("sig"), bands, rows_per_band)
            blocks.append(block)
            block_rows.append(rows + n)
            fps.append(fp_key(table.column("fingerprint").to_pylist()))
            writer.write_table(table)
            n += table.num_rows
    del seen
    keys = np.concatenate(blocks) if blocks else np.zeros((0, bands), np.uint64)   # (docs with words, bands)
    doc_rows = (np.concatenate(block_rows) if block_rows else np.zeros(0, np.int64)).astype(np.uint32)
    del blocks, block_rows
    keys = mixed_keys(keys, out=keys).ravel()   # in place; key i is band i % bands of doc_rows[i // bands]
    order = np.argsort(keys, kind="stable")
    # written after sketches.arrow, and a reader opens all five: a lookup never pairs new arrays with an old file
    _save_npy(files.join(directory, "band_keys.npy"), keys[order])
    del keys
    _save_npy(files.join(directory, "band_rows.npy"), doc_rows[order // bands])
    del order, doc_rows
    fps = np.concatenate(fps) if fps else np.zeros(0, np.uint64)
    fp_order = np.argsort(fps, kind="stable")
    _save_npy(files.join(directory, "fp_keys.npy"), fps[fp_order])
    _save_npy(files.join(directory, "fp_rows.npy"), fp_order.astype(np.uint32))
    return n


def _as_tables(items: Iterable, chunk: int):
    pending = []
    for item in items:
        if isinstance(item, pa.Table):
            if pending:
                yield table_of(pending)
                pending = []
            yield item
        else:
            pending.append(item)
            if len(pending) >= chunk:
                yield table_of(pending)
                pending = []
    if pending:
        yield table_of(pending)


def exists(directory: str) -> bool:
    return files.exists(files.join(directory, "fp_rows.npy"))   # the last file written


def _load_npy(path: str) -> np.ndarray:
    if files.is_local(path):
        return np.load(path.removeprefix("file://"), mmap_mode="r", allow_pickle=False)
    import io
    return np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False)


def _load_table(path: str) -> pa.Table:
    if files.is_local(path):
        return ipc.open_file(pa.memory_map(path.removeprefix("file://"), "r")).read_all()
    return ipc.open_file(pa.py_buffer(files.read_bytes(path))).read_all()


class Match(NamedTuple):
    """An indexed document that shares an exact fingerprint or an LSH band with a query."""
    row: int
    doc_id: str
    karma: int
    fingerprint: str
    sig: bytes
    kept: bool


class SketchIndex:
    """One generation's index, opened for lookups (memory-mapped where local)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.table = _load_table(files.join(directory, SKETCHES))
        self.params = json.loads((self.table.schema.metadata or {}).get(b"params", b"{}"))
        self.band_keys = _load_npy(files.join(directory, "band_keys.npy"))
        self.band_rows = _load_npy(files.join(directory, "band_rows.npy"))
        self.fp_keys = _load_npy(files.join(directory, "fp_keys.npy"))
        self.fp_rows = _load_npy(files.join(directory, "fp_rows.npy"))
        self._doc_id = self.table.column("doc_id")
        self._karma = self.table.column("karma")
        self._fp = self.table.column("fingerprint")
        self._sig = self.table.column("sig")
        self._kept = self.table.column("kept")

    def __len__(self) -> int:
        return self.table.num_rows

    def check(self, cfg: DedupConfig) -> List[str]:
        """The dedup parameters that differ between this index and `cfg` (empty: comparable)."""
        want = params_of(cfg)
        return [f"{k} {self.params.get(k)} (index) vs {want[k]}" for k in PARAMS if self.params.get(k) != want[k]]

    def rows_for(self, fingerprint: str, keys: np.ndarray) -> List[int]:
        """Rows sharing the exact fingerprint or any of the (bands,) band hashes `keys`."""
        rows = set()
        if fingerprint:
            k = fp_key([fingerprint])[0]
            lo, hi = np.searchsorted(self.fp_keys, k, "left"), np.searchsorted(self.fp_keys, k, "right")
            for i in range(int(lo), int(hi)):
                row = int(self.fp_rows[i])
                if self._fp[row].as_py() == fingerprint:
                    rows.add(row)
        if len(keys):
            q = mixed_keys(np.asarray(keys, dtype=np.uint64).reshape(1, -1)).ravel()
            lo = np.searchsorted(self.band_keys, q, side="left")
            hi = np.searchsorted(self.band_keys, q, side="right")
            for a, b in zip(lo, hi):
                rows.update(int(r) for r in self.band_rows[a:b])
        return sorted(rows)

    def match(self, row: int) -> Match:
        return Match(row, self._doc_id[row].as_py(), self._karma[row].as_py(), self._fp[row].as_py(),
                     self._sig[row].as_py(), self._kept[row].as_py())


@lru_cache(maxsize=8)
def open_corpus(directories: Tuple[str, ...]) -> Tuple[SketchIndex, ...]:
    """The indexes of the given generation folders, opened once per process (every DoFn instance shares them)."""
    return tuple(SketchIndex(d) for d in directories)


# Old documents always win against new ones: their survivor rank is their karma plus OLD_RANK (plus KEPT_RANK
# for one the corpus kept, so a drop names a document that is in the corpus). Karma stays below 2**46.
OLD_RANK, KEPT_RANK = 1 << 48, 1 << 47


def old_entries(indexes: Iterable[SketchIndex], fingerprint: str, entry: Entry, bands: int):
    """(fingerprint, Entry) of every indexed document that shares the fingerprint or a band with `entry`: they
    join the new documents' dedup as members that always survive (rank OLD_RANK + karma)."""
    keys = np.frombuffer(entry.keys, dtype="<u8") if entry.keys else np.zeros(0, np.uint64)
    for index in indexes:
        rows = index.params["rows"]
        for row in index.rows_for(fingerprint, keys):
            m = index.match(row)
            old_keys = (np.array([h for _, h in band_keys(sig_array(m.sig), bands, rows)], dtype="<u8").tobytes()
                        if len(m.sig) >= 4 * bands * rows else b"")
            rank = OLD_RANK + (KEPT_RANK if m.kept else 0) + min(m.karma, KEPT_RANK - 1)
            yield m.fingerprint, Entry(m.doc_id, rank, old_keys, m.sig, "")
