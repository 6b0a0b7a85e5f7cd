"""GatherBytes: a GroupByKey of many small byte-string records that holds them as a few large byte strings.

The local runner (FnApiRunner) keeps a GroupByKey's whole input in memory, decoded: one small record costs
~0.2 KB of Python objects (its key, a list slot, the value) on top of its bytes. A combiner it lifts gathers the
records of a bundle into one byte string per key, but holds every key's accumulator until the bundle ends: a
whole second copy of the stage's output at the moment the runner decodes it. Here a bundle's records are
concatenated per key and sent on whenever `max_bytes` are waiting, so the producing stage holds at most that
much and the runner holds ~1 KB chunks. The consumer gets (key, chunks), each chunk zlib-compressed; `records`
reads them back. Used wherever one record per document or link waits in a shuffle: the fetch's host groups, the
exact-dedup groups, the final dedup join, the shard buckets.
"""
from __future__ import annotations

import zlib
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

SPREAD = 512   # gathered keys per shuffle: few enough for large chunks, enough to spread the work of the consumer


def gather_key(key: bytes) -> int:
    """Which of SPREAD gathered keys the records of `key` go to: the same on every worker and every run."""
    return zlib.crc32(key) % SPREAD


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "little") + body


def chunk(framed_records) -> bytes:
    """Framed records -> one chunk as a gathered key's consumer receives it. zlib level 1: the local runner holds
    every chunk several times until the consumer has run, and what the records repeat (payload file ids, hosts,
    URL paths, hex ids) compresses."""
    return zlib.compress(framed_records, 1)


def records(chunks: Iterable[bytes]) -> Iterator[memoryview]:
    """The framed records in a key's chunks, in no particular order."""
    for chunk in chunks:
        view, i = memoryview(zlib.decompress(chunk)), 0
        while i < len(view):
            n = int.from_bytes(view[i:i + 4], "little")
            yield view[i + 4:i + 4 + n]
            i += 4 + n


class _Chunk(beam.DoFn):
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes

    def start_bundle(self):
        self.table, self.size = {}, 0

    def process(self, kv):
        key, record = kv
        acc = self.table.get(key)
        if acc is None:
            acc = self.table[key] = bytearray()
        acc += record
        self.size += len(record)
        if self.size >= self.max_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for kv in self._flush():
            yield GlobalWindows.windowed_value(kv)

    def _flush(self):
        table, self.table, self.size = self.table, {}, 0
        return [(key, chunk(acc)) for key, acc in table.items()]

    def infer_output_type(self, input_type):
        return beam.typehints.Any


class GatherBytes(beam.PTransform):
    """(key, framed record), or a list of such PCollections -> (key, iterable of byte strings that hold all of the
    key's records). Several inputs are chunked each where it is produced, then flattened: the local runner then
    writes the chunks straight into the grouping, instead of holding the records for a stage of their own."""

    def __init__(self, max_bytes: int = 4 << 20):
        super().__init__()
        self.max_bytes = max_bytes

    def expand(self, pcolls):
        if isinstance(pcolls, beam.pvalue.PCollection):
            pcolls = [pcolls]
        chunks = [pc | f"Chunk{i or ''}" >> beam.ParDo(_Chunk(self.max_bytes)) for i, pc in enumerate(pcolls)]
        if len(chunks) > 1:
            chunks = [chunks | "Flatten" >> beam.Flatten()]
        return chunks[0] | "Group" >> beam.GroupByKey()
