"""One shard file, written: documents (or sorted part files) -> an Arrow file of the shard contract
(core/shard_format.py), in record batches of bounded tokens, atomically, same inputs -> same bytes."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, List, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files
from core.shard_format import ShardInfo, TokenizedDoc, open_shard, schema_with_metadata, shard_name
from pipeline.shards import stream


def record_batch(docs: Sequence[TokenizedDoc]) -> pa.RecordBatch:
    lengths = np.fromiter((len(d.tokens) for d in docs), dtype=np.int64, count=len(docs))
    offsets = np.zeros(len(docs) + 1, dtype=np.int32)   # the caller keeps a batch under 2**31 tokens
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(d.tokens, dtype=np.uint16) for d in docs])
    return pa.record_batch([
        pa.array([d.doc_id for d in docs], pa.string()),
        pa.array([d.url for d in docs], pa.string()),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint16())),
        pa.array([int(d.karma) for d in docs], pa.int64()),
        pa.array([list(d.subreddits) for d in docs], pa.list_(pa.string())),
        pa.array([int(d.created_utc) for d in docs], pa.int64()),
    ], schema=schema_with_metadata())


def doc_order(d: TokenizedDoc) -> tuple:
    return d.doc_id, d.url      # url breaks (unlikely) id ties: the order stays total


def batches_of(docs: Iterable[TokenizedDoc], batch_tokens: int) -> Iterator[List[TokenizedDoc]]:
    """Consecutive runs of docs with at most `batch_tokens` tokens each (a longer document is a run alone), cut
    where stream.rebatch cuts the same rows. Takes docs one at a time: only the current run is held."""
    run, filled = [], 0
    for d in docs:
        if filled and filled + len(d.tokens) > batch_tokens:
            yield run
            run, filled = [], 0
        run.append(d)
        filled += len(d.tokens)
    if run:
        yield run


def write_sorted(path: str, docs: Iterable[TokenizedDoc], batch_tokens: int = 2**24,
                 durable: bool = True, presorted: bool = False) -> Tuple[int, int, int, str]:
    """Docs sorted by doc_id into an Arrow file at `path`, atomically, in record batches of <= batch_tokens tokens,
    building one batch at a time (never a second copy of all the tokens): (docs, tokens, bytes, sha256).
    `presorted`: docs already come in doc_order, e.g. read one by one from payload files; they are not gathered."""
    if not presorted:
        docs = sorted(docs, key=doc_order)
    tables = (pa.Table.from_batches([record_batch(run)]) for run in batches_of(docs, batch_tokens))
    return stream.write_batches(path, schema_with_metadata(), stream.rebatch(tables, batch_tokens), durable)


def write_shard(out_dir: str, split: str, index: int, num_shards: int, docs: Iterable[TokenizedDoc],
                batch_tokens: int = 2**24) -> ShardInfo:
    """Write one shard atomically from its documents; same inputs -> same bytes."""
    name = shard_name(split, index, num_shards)
    return ShardInfo(name, split, index, num_shards, *write_sorted(files.join(out_dir, name), docs, batch_tokens))


Piece = Union[str, Tuple[str, int, int]]   # a whole sorted file, or (file, first record batch, batches)


def _open_batches(path: str):
    # read, not memory-mapped: a bundle's part file holds up to the whole corpus, and every mapped page read would
    # stay in this process's RSS while the file is open (~0.2 GB at 10^5 documents)
    if files.is_local(path):
        return ipc.open_file(pa.OSFile(path.removeprefix("file://"), "r"))
    return ipc.open_file(pa.PythonFile(files.open_read(path), mode="r"))   # seeks to the batches it reads


def piece_tables(pieces: Sequence[Piece], max_open: int = 8) -> Iterator[pa.Table]:
    """The rows of each piece, in order; a few part files kept open (consecutive pieces mostly share one)."""
    readers: "OrderedDict[str, object]" = OrderedDict()
    for piece in pieces:
        if isinstance(piece, str):
            yield open_shard(piece)
            continue
        path, first, count = piece
        reader = readers.pop(path, None) or _open_batches(path)
        readers[path] = reader
        while len(readers) > max_open:
            readers.popitem(last=False)
        yield pa.Table.from_batches([reader.get_batch(i) for i in range(first, first + count)], reader.schema)


def join_shard(out_dir: str, split: str, index: int, num_shards: int, parts: Sequence[Piece],
               batch_tokens: int = 2**24, generation: int = 0) -> ShardInfo:
    """Write one shard by streaming sorted pieces of part files (consecutive doc_id ranges, in order) into it: the
    same bytes as write_shard over their documents, holding one record batch at a time."""
    name = shard_name(split, index, num_shards, generation)
    info = stream.write_batches(files.join(out_dir, name), schema_with_metadata(), stream.rebatch(piece_tables(parts),
                                                                                                  batch_tokens))
    return ShardInfo(name, split, index, num_shards, *info, generation=generation)
