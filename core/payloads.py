"""Payload files: what a document carries to the end of the run (its tokens, its MinHash signature), written once
where it is produced, so that shuffles carry a short reference instead (docs/scaling.md, "Memory on one machine").

A payload file is an Arrow IPC file, `<run --out>/_payloads/<file id>.arrow`, one record batch:
    doc_id: string | tokens: list<uint16> (GPT-2 ids, ending with EOT) | sig: binary (little-endian uint32) |
    fingerprint: string (the exact-dedup fingerprint; with the signature, what a corpus's sketch index and a
    resumed run need without the text)
Its name is a hash of its bytes, so a retried bundle that writes the same documents finds the same file, and it
appears whole or not at all (temp name + rename, core.files): a rerun may read every `*.arrow` in `_payloads/`
(the footer proves it complete, the doc_id column says which documents it holds; the directory holds one job's
files: pipeline/outdir.py removes another job's when --overwrite claims it). The leading underscore keeps
`pyarrow.dataset` working on the run's folder.

Beside them, `<file id>.drops` files (Arrow IPC too, format webtext-drops-1: stage, reason, url, detail) hold the
pages that extraction or the quality rules dropped, written in batches the same way, so that a rerun knows every
page an earlier run decided, kept or not (pipeline/resume.py). Their suffix keeps them out of `*.arrow` globs; the
`job` in their schema's metadata names the settings that decided them (a rerun reuses only its own job's).

A reference (`Document.payload`) is "<file id>:<tokens offset>:<tokens bytes>:<sig offset>:<sig bytes>", byte
ranges inside the file (Arrow IPC stores the values of an uncompressed column contiguously), so a reader needs
one seek and one read per document, on any filesystem Beam knows, and no Arrow parsing.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Iterable, List, NamedTuple, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files

PAYLOADS_DIR = "_payloads"
FORMAT = b"webtext-payload-2"   # 2: + fingerprint
SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("tokens", pa.list_(pa.uint16()), nullable=False),
    pa.field("sig", pa.binary(), nullable=False),
    pa.field("fingerprint", pa.string(), nullable=False),
], metadata={b"format": FORMAT})
DROPS_SUFFIX = ".drops"
DROPS_FORMAT = b"webtext-drops-1"
DROPS_SCHEMA = pa.schema([pa.field(name, pa.string(), nullable=False) for name in ("stage", "reason", "url", "detail")],
                         metadata={b"format": DROPS_FORMAT})


class Ref(NamedTuple):
    file_id: str
    tokens_offset: int
    tokens_bytes: int
    sig_offset: int
    sig_bytes: int

    def __str__(self) -> str:
        return ":".join(map(str, self))


def parse_ref(ref: str) -> Ref:
    file_id, *nums = ref.split(":")
    return Ref(file_id, *map(int, nums))


def payload_dir(out_dir: str) -> str:
    return files.join(str(out_dir), PAYLOADS_DIR)


def _with_job(schema: pa.Schema, job: str) -> pa.Schema:
    return schema.with_metadata({**schema.metadata, b"job": job.encode()}) if job else schema


def _ipc_file(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def encode(rows: Iterable[Tuple]) -> Tuple[bytes, List[Ref]]:
    """(doc_id, tokens as <u2 bytes, sig bytes[, fingerprint]) rows -> the file's bytes and one Ref per row, in
    order."""
    rows = [tuple(r) + ("",) * (4 - len(r)) for r in rows]
    tok = [np.frombuffer(t, dtype="<u2") for _, t, _, _ in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in tok], out=offsets[1:])
    batch = pa.record_batch([
        pa.array([r[0] for r in rows], pa.string()),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(tok) if tok else np.zeros(0, "<u2"),
                                                             pa.uint16())),
        pa.array([r[2] for r in rows], pa.binary()),
        pa.array([r[3] for r in rows], pa.string()),
    ], schema=SCHEMA)
    data = _ipc_file(batch)
    file_id = hashlib.blake2b(data, digest_size=10).hexdigest()
    return data.to_pybytes(), (_refs(data, file_id) if rows else [])


def _refs(data: pa.Buffer, file_id: str) -> List[Ref]:
    """Byte ranges of each row's values in a payload file's bytes, from where a reader finds its buffers."""
    back = ipc.open_file(pa.BufferReader(data)).get_batch(0)
    tokens, sig = back.column(1), back.column(2)
    t_base = tokens.values.buffers()[1].address - data.address + 2 * tokens.values.offset
    t_off = tokens.offsets.to_numpy()
    s_off = np.frombuffer(sig.buffers()[1], dtype=np.int32)[sig.offset:sig.offset + len(back) + 1]
    # no signature bytes at all (near dedup off): the values buffer is empty and its address means nothing
    s_base = sig.buffers()[2].address - data.address if s_off[-1] > s_off[0] else 0
    return [Ref(file_id, t_base + 2 * int(t_off[i]), 2 * int(t_off[i + 1] - t_off[i]),
                s_base + int(s_off[i]) if s_off[i + 1] > s_off[i] else 0, int(s_off[i + 1] - s_off[i]))
            for i in range(len(back))]


def write(directory: str, rows: Iterable[Tuple]) -> List[Ref]:
    """Write one payload file (whole or nothing) and return the rows' references. A file of that name is already
    complete (same bytes), so it is not written again."""
    data, refs = encode(rows)
    if refs:
        files.write_once(files.join(str(directory), f"{refs[0].file_id}.arrow"), data)
    return refs


def write_drops(directory: str, drops: Iterable[Tuple], job: str = "") -> str:
    """Write one drops file of (stage, reason, url, detail) rows (whole or nothing); returns its path ("" if none)."""
    drops = list(drops)
    if not drops:
        return ""
    batch = pa.record_batch([pa.array([d[i] for d in drops], pa.string()) for i in range(4)],
                            schema=_with_job(DROPS_SCHEMA, job))
    data = _ipc_file(batch)
    path = files.join(str(directory), hashlib.blake2b(data, digest_size=10).hexdigest() + DROPS_SUFFIX)
    files.write_once(path, data.to_pybytes())
    return path


def _job(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(b"job", b"").decode()


def read_outcomes(path: str) -> Tuple[str, List[Tuple]]:
    """What a rerun reuses from one complete file, with the job named in it ("" if none): for a payload file
    (doc_id, fingerprint, Ref) per document (a format-1 file, without fingerprints, gives none: it cannot be
    reused); for a drops file (stage, reason, url, detail) per dropped page."""
    if files.is_local(path):   # mapped: only the pages of the columns read here are read from disk, not the tokens
        data = pa.memory_map(str(path).removeprefix("file://")).read_buffer()   # unmapped with its last buffer
    else:
        data = pa.py_buffer(files.read_bytes(path))
    reader = ipc.open_file(pa.BufferReader(data))
    table = reader.read_all()
    job = _job(reader.schema)
    if path.endswith(DROPS_SUFFIX):
        return job, list(zip(*(table.column(n).to_pylist() for n in DROPS_SCHEMA.names)))
    if "fingerprint" not in table.column_names or not table.num_rows:
        return job, []
    file_id = path.rsplit("/", 1)[-1].removesuffix(".arrow")
    return job, list(zip(table.column("doc_id").to_pylist(), table.column("fingerprint").to_pylist(),
                         _refs(data, file_id)))


def read_doc_ids(path: str) -> List[str]:
    """The documents a (complete) payload file holds: what a rerun needs to know to reuse it. A local file is
    memory-mapped: only its doc_id column is read, not its tokens."""
    return files.read_arrow(path).column("doc_id").to_pylist()


def read_sketches(path: str) -> pa.Table:
    """doc_id, fingerprint and sig of a (complete) payload file, without its tokens: what a sketch index is
    built from (memory-mapped where local: the tokens are not read). A format-1 file (no fingerprint column) gets
    empty fingerprints."""
    table = files.read_arrow(path)
    if "fingerprint" not in table.column_names:
        table = table.append_column("fingerprint", pa.array([""] * table.num_rows, pa.string()))
    return table.select(["doc_id", "fingerprint", "sig"])


class Reader:
    """Reads byte ranges of payload files in one directory: one seek + read each, a few files kept open (a shard
    writer reads in doc_id order, so its reads jump between files). Use as a context manager."""

    def __init__(self, directory: str, max_open: int = 64):
        self.directory, self.max_open = str(directory), max_open
        self._open: "OrderedDict[str, object]" = OrderedDict()
        self._local = files.is_local(self.directory)

    def _handle(self, file_id: str):
        h = self._open.pop(file_id, None)
        if h is None:
            path = files.join(self.directory, f"{file_id}.arrow")
            h = os.open(path.removeprefix("file://"), os.O_RDONLY) if self._local else files.open_read(path)
            while len(self._open) >= self.max_open:
                self._close(self._open.popitem(last=False)[1])
        self._open[file_id] = h
        return h

    def _read(self, file_id: str, offset: int, length: int) -> bytes:
        h = self._handle(file_id)
        if self._local:
            data = os.pread(h, length, offset)
        else:
            h.seek(offset)
            data = h.read(length)
        if len(data) != length:
            raise IOError(f"payload file {file_id}.arrow in {self.directory} is shorter than its references")
        return data

    def tokens(self, ref) -> np.ndarray:
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        return np.frombuffer(self._read(ref.file_id, ref.tokens_offset, ref.tokens_bytes), dtype="<u2")

    def sig(self, ref) -> bytes:
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        return self._read(ref.file_id, ref.sig_offset, ref.sig_bytes) if ref.sig_bytes else b""

    def _close(self, h) -> None:
        if self._local:
            os.close(h)
        else:
            h.close()

    def close(self) -> None:
        while self._open:
            self._close(self._open.popitem()[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
