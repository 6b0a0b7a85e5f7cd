"""Unique Documents -> GPT-2 tokens -> Arrow shards sized by tokens + manifest.json (the last file written).

    documents -> Tokenize: (split, bucket) by doc_id, tokens or payload ref   bucket = one of `buckets` doc_id ranges
              -> GatherBytes (split, bucket) -> WriteBucket              each bucket's rows, sorted, appended to
                                                                         its bundle's part file (spill), tokens
                                                                         read from the payload files
              -> AllBuckets -> Plan: buckets packed into shards of <= target_tokens   only token counts travel
              -> Reshuffle -> WriteShard: a shard streamed from its buckets' part files, one record batch at a time
              -> AllShards -> WriteManifest: stale shards of our previous manifest removed, manifest.json, parts removed

The number of shards follows from the data (format.plan_shards), so names read `-of-N` with N known before any
shard is written. Documents cross one shuffle (by bucket); the plan needs only per-bucket token totals, and a
shard writer holds one record batch, whatever the shard's size. The part files live in `<out>/.webtext-buckets/`
until the manifest is written: one per WriteBucket bundle, not one per bucket (at 10^4 documents most of the
8192 buckets hold one or two documents, and creating, opening and removing a file each cost more than writing
their rows). Same inputs -> same buckets -> same plan -> byte-identical shards, on any runner.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import secrets
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from core import files, payloads
from core.records import SHARDS, Document, Step
from core.shard_format import (MANIFEST, SHARD_NAME, SPLITS, TokenizedDoc, bucket_of, plan_shards,
                               schema_with_metadata, split_of, write_manifest)
from core.tokenizer import encode_document
from core.gather import GatherBytes, framed, records
from pipeline.config import ShardConfig
from pipeline.shards.assemble import batches_of, doc_order, join_shard, record_batch
from pipeline.shards.stream import BatchFile

PARTS_DIR = ".webtext-buckets"                       # ours: every file in it matching PART_NAME is ours to remove
PART_NAME = re.compile(r"part-[0-9a-f]{16}\.arrow|(train|val)-b\d{7}\.arrow")   # the second: per-bucket files, before 2026-12-05


class Part(NamedTuple):
    """One bucket's documents, sorted: record batches first .. first + count - 1 of a part file."""
    split: str
    bucket: int
    docs: int
    tokens: int
    path: str
    first: int = 0
    count: int = 0


def tokenize(doc: Document) -> TokenizedDoc:
    """The document's tokens: those filled where it was extracted (pipeline/per_document.py), else encoded here.
    A document whose tokens are in a payload file keeps its reference (a str) in `tokens` until its bucket is
    written: the shuffle carries ~0.1 KB per document, not its tokens."""
    if doc.payload:
        tokens = doc.payload
    elif doc.tokens:
        tokens = np.frombuffer(doc.tokens, dtype="<u2").astype(np.uint16)
    else:
        tokens = np.asarray(encode_document(doc.text), dtype=np.uint16)
    return TokenizedDoc(doc.doc_id, doc.url, tokens, doc.karma, tuple(doc.subreddits), doc.created_utc)


def token_count(tdoc: TokenizedDoc) -> int:
    return payloads.parse_ref(tdoc.tokens).tokens_bytes // 2 if isinstance(tdoc.tokens, str) else len(tdoc.tokens)


def with_tokens(docs, reader: payloads.Reader):
    """One bucket's documents in doc_id order, their tokens read from the payload files where they were left
    (ordered reads, one seek + read each)."""
    for d in sorted(docs, key=doc_order):
        yield d._replace(tokens=reader.tokens(d.tokens).astype(np.uint16)) if isinstance(d.tokens, str) else d


class _Tokenize(Step):
    stage = SHARDS

    def __init__(self, cfg: ShardConfig):
        super().__init__()
        self.cfg = cfg

    def apply(self, doc: Document):
        tdoc = tokenize(doc)
        split = split_of(doc.doc_id, self.cfg.val_fraction)
        self.count("tokens", token_count(tdoc))
        self.count(f"{split}_docs")
        # one framed byte string, gathered with its bucket's others into compressed chunks (core/gather.py): the
        # local runner holds ~0.1 KB per document here, not a key, a list and a ~0.35 KB pickle each
        return (split, bucket_of(doc.doc_id, self.cfg.buckets)), framed(pickle.dumps(tdoc, protocol=5))


class _WriteBucket(beam.DoFn):
    """Appends each bucket's rows to one part file per bundle, then outputs the bundle's Parts once that file is
    whole. The payload files stay open for the whole bundle (one Reader)."""

    def __init__(self, out_dir: str, cfg: ShardConfig, payload_dir: str):
        self.out_dir, self.cfg, self.payload_dir = out_dir, cfg, payload_dir
        self._reader = self._file = None
        self._parts: list = []

    def start_bundle(self):
        self._reader, self._file, self._parts = payloads.Reader(self.payload_dir), None, []

    def process(self, kv):
        (split, bucket), chunks = kv
        docs = [pickle.loads(record) for record in records(chunks)]
        if self._file is None:   # a retried bundle writes a file of its own; the manifest step removes both
            path = files.join(self.out_dir, PARTS_DIR, f"part-{secrets.token_hex(8)}.arrow")
            if files.is_local(path):
                os.makedirs(os.path.dirname(path.removeprefix("file://")), exist_ok=True)
            # Scratch: not fsynced (a crash before the manifest means a rerun, which rewrites it).
            self._file = BatchFile(path, schema_with_metadata(), durable=False)
        n_docs = tokens = 0
        first = self._file.batches
        for run in batches_of(with_tokens(docs, self._reader), self.cfg.batch_tokens):   # one batch held at a time
            self._file.write(record_batch(run))
            n_docs += len(run)
            tokens += sum(len(d.tokens) for d in run)
        self._parts.append(Part(split, bucket, n_docs, tokens, self._file.path, first, self._file.batches - first))

    def finish_bundle(self):
        self._close_reader()
        if self._file is not None:
            self._file.close()
            self._file = None
        parts, self._parts = self._parts, []
        yield from Step.windowed(parts)

    def teardown(self):   # after a failed bundle: no half-written part file stays
        self._close_reader()
        if self._file is not None:
            self._file.abort()
            self._file = None

    def _close_reader(self):
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def shard_tasks(parts, target_tokens: int):
    """(split, index, num_shards, pieces in doc_id order) per shard of the plan, a piece being a bucket's
    (part path, first batch, batches); a split without documents gets one empty shard, so every split's names
    exist."""
    plan = plan_shards({(p.split, p.bucket): p.tokens for p in parts}, target_tokens)
    members = {(split, i): [] for split in SPLITS for i in range(plan["num_shards"][split])}
    for p in sorted(parts, key=lambda p: (p.split, p.bucket)):
        members[(p.split, plan["shard"][(p.split, p.bucket)])].append((p.path, p.first, p.count))
    for (split, index), paths in sorted(members.items()):
        yield split, index, plan["num_shards"][split], tuple(paths)


class _WriteShard(beam.DoFn):
    def __init__(self, out_dir: str, cfg: ShardConfig, generation: int = 0):
        self.out_dir, self.cfg, self.generation = out_dir, cfg, generation

    def process(self, task):
        split, index, n, pieces = task
        yield (join_shard(self.out_dir, split, index, n, pieces, self.cfg.batch_tokens, self.generation),
               sorted({path for path, _, _ in pieces}))


def previous_shards(out_dir: str) -> set:
    """Shard names the manifest.json already in `out_dir` lists: the only files a rerun may remove. Entries that
    do not look like our shard names (a hand-edited manifest, "../x") are never touched."""
    path = files.join(out_dir, MANIFEST)
    if not files.exists(path):
        return set()
    try:
        entries = json.loads(files.read_bytes(path)).get("shards", [])
    except (ValueError, AttributeError):   # unreadable: we cannot tell what we wrote, so remove nothing
        return set()
    return {e["name"] for e in entries if isinstance(e, dict) and SHARD_NAME.fullmatch(str(e.get("name", "")))}


class _WriteManifest(beam.DoFn):
    """Removes the shards our previous manifest listed that this run did not write, writes manifest.json, then
    removes the part files (this run's and any a killed run left in PARTS_DIR)."""

    def __init__(self, out_dir: str, config: dict):
        self.out_dir, self.config = out_dir, config

    def process(self, written):
        infos = [info for info, _ in written]
        # Removed before the new manifest is written: if the process dies in between, the old manifest is still
        # there and the rerun removes the rest. Anything the old manifest did not list is left alone.
        stale = sorted(previous_shards(self.out_dir) - {s.name for s in infos})
        files.delete([files.join(self.out_dir, name) for name in stale])
        manifest = write_manifest(self.out_dir, infos, self.config)
        parts_dir = files.join(self.out_dir, PARTS_DIR)
        files.delete(sorted({p for _, paths in written for p in paths} |
                            {p for p in files.match(files.join(parts_dir, "*.arrow"))
                             if PART_NAME.fullmatch(p.rsplit("/", 1)[-1])}))
        files.remove_empty_dir(parts_dir)
        yield manifest


class WriteShards(beam.PTransform):
    """Documents -> shard files under `out_dir`; outputs the manifest dict (one element)."""

    def __init__(self, out_dir: str, cfg: ShardConfig, config: dict, payload_dir: str | None = None,
                 generation: int = 0):
        super().__init__()
        self.out_dir, self.cfg, self.config = out_dir, cfg, config
        self.generation = generation   # > 0: a generation added to a corpus, its shards named data/*-g<gen>-*
        # where the documents' payload references point (the run's --out/_payloads/, core/payloads.py)
        self.payload_dir = payload_dir or payloads.payload_dir(out_dir)

    def expand(self, documents):
        cfg = self.cfg
        return (documents
                | "Tokenize" >> beam.ParDo(_Tokenize(cfg))
                | "GroupByBucket" >> GatherBytes()
                | "WriteBucket" >> beam.ParDo(_WriteBucket(self.out_dir, cfg, self.payload_dir))
                | "AllBuckets" >> beam.combiners.ToList()
                | "Plan" >> beam.FlatMap(shard_tasks, cfg.target_tokens)
                | "SpreadShards" >> beam.Reshuffle()
                | "WriteShard" >> beam.ParDo(_WriteShard(self.out_dir, cfg, self.generation))
                | "AllShards" >> beam.combiners.ToList()
                | "WriteManifest" >> beam.ParDo(_WriteManifest(self.out_dir, self.config)))
