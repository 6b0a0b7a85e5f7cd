"""Arrow IPC files written as a stream of record batches: atomic, checksummed on the way out, and never more than
one record batch (<= batch_tokens tokens) built in memory at a time.

A shard is assembled from sorted pieces (its documents, or the bucket files the pipeline spilled them to);
`rebatch` cuts the rows into record batches greedily by token count, so the batches, and with them the bytes,
depend only on the row sequence and batch_tokens, not on how the pieces were cut.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from core import files


class _Hashing:
    """A write-only file that checksums and counts what passes through it (no second read of the file)."""

    def __init__(self, raw):
        self.raw, self.sha, self.size, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        data = memoryview(data)
        self.sha.update(data)
        self.size += data.nbytes
        self.raw.write(data)
        return data.nbytes

    def flush(self):
        pass

    def close(self):
        self.closed = True


@contextmanager
def atomic_stream(path: str, durable: bool = True):
    """A binary stream that becomes `path` whole on success and leaves nothing on failure (core.files' rule, for
    streamed writes: locally a temp file flushed and renamed over the target; elsewhere a temp object renamed
    once its upload completed). durable=False skips the fsyncs, for scratch files a crash makes worthless."""
    if files.is_local(path) and not durable:
        local = path.removeprefix("file://")
        tmp = os.path.join(os.path.dirname(local), files.temp_name(os.path.basename(local)))
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    if files.is_local(path):
        with files.replacing(path) as tmp, open(tmp, "wb") as f:
            yield f
        return
    directory, name = path.rsplit("/", 1)
    tmp = files.join(directory, files.temp_name(name))
    try:
        with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            yield f
        FileSystems.rename([tmp], [path])
    finally:
        if files.exists(tmp):
            FileSystems.delete([tmp])


def _tokens_of(lists) -> np.ndarray:
    """Tokens per row of a list<uint16> chunk (sliced or not)."""
    return np.diff(lists.offsets.to_numpy())


def _combine(pieces: List[pa.Table]) -> pa.RecordBatch:
    """The pieces' rows as one record batch whose buffers hold these rows and nothing else. Arrow's IPC writer
    writes a slice that starts at row 0 with its parent's whole buffers, and a later one trimmed, so rows cut from
    longer batches (written as they are) would give other bytes than the same rows written fresh: concatenating
    each column's chunks builds every buffer anew, even for one chunk (the one copy of this batch's rows; `take`
    gave the same bytes but held ~3 copies on the way, 46 MB for a 9 MB batch)."""
    table = pa.concat_tables(pieces)
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return pa.RecordBatch.from_arrays([pa.concat_arrays(column.chunks) for column in table.columns],
                                      schema=table.schema)


def _compacted(pieces: List[pa.Table]) -> pa.Table:
    """The pieces' rows as one table of one chunk: its own buffers, no longer those the pieces were cut from."""
    return pa.concat_tables(pieces).combine_chunks()


def rebatch(tables: Iterable[pa.Table], batch_tokens: int, compact_every: int = 64) -> Iterator[pa.RecordBatch]:
    """Record batches of <= batch_tokens tokens (a longer row alone) over the rows of `tables`, in order.

    A shard joined from a small run's buckets gets its rows a few at a time, thousands of tables per batch (each
    holding the whole record batch it was read from, and Arrow's and Python's objects around it: ~9 KB for 2-3
    rows); every `compact_every` of them are copied into one table, so what is held while a batch fills is its
    rows about once. The batches are the same rows, so the bytes do not change."""
    pending, loose, filled = [], [], 0
    for table in tables:
        if table.num_rows == 0:
            continue
        lengths = np.concatenate([_tokens_of(c) for c in table.column("tokens").chunks]).tolist()
        start = 0
        for i, n in enumerate(lengths):
            if filled and filled + n > batch_tokens:
                if i > start:
                    loose.append(table.slice(start, i - start))
                yield _combine(pending + loose)
                pending, loose, filled, start = [], [], 0, i
            filled += n
        loose.append(table.slice(start))
        if len(loose) >= compact_every:
            pending.append(_compacted(loose))
            loose = []
    if pending or loose:
        yield _combine(pending + loose)


class BatchFile:
    """An Arrow IPC file written batch by batch over many calls (not in one `with`), atomic like write_batches:
    `close()` makes it `path` whole, `abort()` leaves nothing. `batches` counts the batches written so far, so a
    reader can take back exactly the rows of some of them (`get_batch`)."""

    def __init__(self, path: str, schema: pa.Schema, durable: bool = True):
        self.path, self.batches = path, 0
        self._stream = atomic_stream(path, durable)
        raw = self._stream.__enter__()
        try:
            self._writer = ipc.new_file(pa.PythonFile(raw, mode="w"), schema)
        except BaseException:
            self.abort()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.batches += 1

    def close(self) -> None:
        try:
            self._writer.close()
        except BaseException:
            self.abort()
            raise
        self._stream.__exit__(None, None, None)

    def abort(self) -> None:
        """Remove the temporary file (the contextmanager's failure path)."""
        failed = RuntimeError(f"{self.path} abandoned")
        self._stream.__exit__(RuntimeError, failed, None)


def write_batches(path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                  durable: bool = True) -> Tuple[int, int, int, str]:
    """Write an Arrow IPC file atomically from a stream of batches: (rows, tokens, bytes, sha256)."""
    rows = tokens = 0
    with atomic_stream(path, durable) as raw:
        sink = _Hashing(raw)
        with ipc.new_file(pa.PythonFile(sink, mode="w"), schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
                tokens += int(_tokens_of(batch.column(batch.schema.get_field_index("tokens"))).sum())
    return rows, tokens, sink.size, sink.sha.hexdigest()
