"""Unique Documents -> GPT-2 tokens -> Arrow shards + manifest.json (the last file written).

Each document goes to (split, shard) by hash of its doc_id; a GroupByKey gathers each shard's documents on one
worker, which sorts them by doc_id and writes the file atomically; the written-shard records are combined into
the manifest in one final step. Same inputs -> byte-identical shards, on any runner.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from core.records import SHARDS, Document, Step
from pipeline.config import ShardConfig
from pipeline.shards.format import TokenizedDoc, assign_shard, write_manifest, write_shard
from pipeline.shards.tokenize import encode_document


def tokenize(doc: Document) -> TokenizedDoc:
    return TokenizedDoc(doc.doc_id, doc.url, np.asarray(encode_document(doc.text), dtype=np.uint16),
                        doc.karma, tuple(doc.subreddits), doc.created_utc)


class _Tokenize(Step):
    stage = SHARDS

    def __init__(self, cfg: ShardConfig):
        super().__init__()
        self.cfg = cfg

    def apply(self, doc: Document):
        tdoc = tokenize(doc)
        split, index = assign_shard(doc.doc_id, self.cfg.val_fraction, self.cfg.train_shards, self.cfg.val_shards)
        self.count("tokens", len(tdoc.tokens))
        self.count(f"{split}_docs")
        return (split, index), tdoc


class _WriteShard(beam.DoFn):
    def __init__(self, out_dir: str, cfg: ShardConfig):
        self.out_dir, self.cfg = out_dir, cfg

    def process(self, kv):
        (split, index), docs = kv
        n = self.cfg.val_shards if split == "val" else self.cfg.train_shards
        yield write_shard(self.out_dir, split, index, n, docs)


class _WriteManifest(beam.DoFn):
    """Fills in shards that got no documents (so every `-of-N` name exists), then writes manifest.json."""

    def __init__(self, out_dir: str, cfg: ShardConfig, config: dict):
        self.out_dir, self.cfg, self.config = out_dir, cfg, config

    def process(self, infos):
        have = {(s.split, s.index) for s in infos}
        infos = list(infos)
        for split, n in (("train", self.cfg.train_shards), ("val", self.cfg.val_shards)):
            infos += [write_shard(self.out_dir, split, i, n, []) for i in range(n) if (split, i) not in have]
        # Shards of an earlier run into the same directory with other shard counts would mislead readers.
        names = {s.name for s in infos}
        stale = [m.path for m in FileSystems.match([FileSystems.join(self.out_dir, "*.arrow")])[0].metadata_list
                 if m.path.rsplit("/", 1)[-1] not in names]
        if stale:
            FileSystems.delete(stale)
        yield write_manifest(self.out_dir, infos, self.config)


class WriteShards(beam.PTransform):
    """Documents -> shard files under `out_dir`; outputs the manifest dict (one element)."""

    def __init__(self, out_dir: str, cfg: ShardConfig, config: dict):
        super().__init__()
        self.out_dir, self.cfg, self.config = out_dir, cfg, config

    def expand(self, documents):
        return (documents
                | "Tokenize" >> beam.ParDo(_Tokenize(self.cfg))
                | "GroupByShard" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(_WriteShard(self.out_dir, self.cfg))
                | "AllShards" >> beam.combiners.ToList()
                | "WriteManifest" >> beam.ParDo(_WriteManifest(self.out_dir, self.cfg, self.config)))
