"""Unique Documents -> GPT-2 tokens -> Arrow shards sized by tokens + manifest.json (the last file written).

    documents -> Tokenize: (split, bucket) by doc_id, tokens                      bucket = a fixed doc_id range
              -> TokensPerBucket (combine) -> one dict -> Plan                     shard count from the totals
              -> ToShard (plan as side input) -> GroupByKey (split, shard) -> WriteShard (sorted, streamed batches)
              -> AllShards -> WriteManifest (empty splits filled, stale shards of our last run removed)

The number of shards follows from the data: buckets are packed in doc_id order into shards of at most
`shards.target_tokens` (format.plan_shards), so names read `-of-N` with N known before any shard is written.
Only token counts travel to the plan; each writer holds one shard's documents (bounded by the target) and one
record batch being built. Same inputs -> same plan -> byte-identical shards, on any runner.
"""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from core import files
from core.records import SHARDS, Document, Step
from pipeline.config import ShardConfig
from pipeline.shards.format import (MANIFEST, SHARD_NAME, SPLITS, TokenizedDoc, bucket_of, plan_shards, split_of,
                                    write_manifest, write_shard)
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
        split = split_of(doc.doc_id, self.cfg.val_fraction)
        self.count("tokens", len(tdoc.tokens))
        self.count(f"{split}_docs")
        return (split, bucket_of(doc.doc_id, self.cfg.buckets)), tdoc


def _to_shard(kv, plan):
    (split, bucket), tdoc = kv
    return (split, plan["shard"][(split, bucket)], plan["num_shards"][split]), tdoc


class _WriteShard(beam.DoFn):
    def __init__(self, out_dir: str, cfg: ShardConfig):
        self.out_dir, self.cfg = out_dir, cfg

    def process(self, kv):
        (split, index, n), docs = kv
        yield write_shard(self.out_dir, split, index, n, docs, self.cfg.batch_tokens)


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
    """Writes the shards no document reached (a split with no documents still has its one `-of-00001` file),
    removes the shards our previous manifest listed that this run did not write, then writes manifest.json."""

    def __init__(self, out_dir: str, cfg: ShardConfig, config: dict):
        self.out_dir, self.cfg, self.config = out_dir, cfg, config

    def process(self, infos, plan):
        infos = list(infos)
        have = {(s.split, s.index) for s in infos}
        for split in SPLITS:
            n = plan["num_shards"][split]
            infos += [write_shard(self.out_dir, split, i, n, []) for i in range(n) if (split, i) not in have]
        # Removed before the new manifest is written: if the process dies in between, the old manifest is still
        # there and the rerun removes the rest. Anything the old manifest did not list is left alone.
        stale = sorted(previous_shards(self.out_dir) - {s.name for s in infos})
        if stale:
            paths = [files.join(self.out_dir, name) for name in stale]
            FileSystems.delete([p for p in paths if files.exists(p)])
        yield write_manifest(self.out_dir, infos, self.config)


class WriteShards(beam.PTransform):
    """Documents -> shard files under `out_dir`; outputs the manifest dict (one element)."""

    def __init__(self, out_dir: str, cfg: ShardConfig, config: dict):
        super().__init__()
        self.out_dir, self.cfg, self.config = out_dir, cfg, config

    def expand(self, documents):
        cfg = self.cfg
        tokenized = documents | "Tokenize" >> beam.ParDo(_Tokenize(cfg))
        plan = (tokenized
                | "TokensPerBucket" >> beam.Map(lambda kv: (kv[0], len(kv[1].tokens)))
                | "SumPerBucket" >> beam.CombinePerKey(sum)
                | "AllBuckets" >> beam.combiners.ToDict()
                | "Plan" >> beam.Map(plan_shards, cfg.target_tokens))
        plan = beam.pvalue.AsSingleton(plan)
        return (tokenized
                | "ToShard" >> beam.Map(_to_shard, plan)
                | "GroupByShard" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(_WriteShard(self.out_dir, cfg))
                | "AllShards" >> beam.combiners.ToList()
                | "WriteManifest" >> beam.ParDo(_WriteManifest(self.out_dir, cfg, self.config), plan))
