"""Deduplicate: Documents -> unique Documents + Drops (stage "dedup"), as one composite Beam transform.

    documents -> Sketch (doc_id, karma, fingerprint, signature)          one pass, the only CPU-heavy step
              -> ExactDuplicates: GroupByKey fingerprint, keep the best   decisions "exact_duplicate"
              -> NearDuplicates: LSH bands, verify, components, survivor  decisions "near_duplicate"
    documents + decisions -> CoGroupByKey doc_id -> kept | Drop           the only shuffle of whole documents
                                                                          (their text zlib-compressed across it)

Only sketches (a few hundred bytes) travel through the dedup shuffles; documents are joined back once, by
doc_id, at the end. Every decision is a function of sets (fingerprint groups, buckets, components) and the
survivor rule (highest karma, then smallest doc_id), so the output does not depend on bundle order or runner.
Counters are taken at the join, where every input document is seen exactly once:
dedup.in == dedup.out + dedup.drop.exact_duplicate + dedup.drop.near_duplicate.
"""
from __future__ import annotations

import zlib

import apache_beam as beam

from core.records import DEDUP, DROPPED, Document, Step
from dedup.config import DedupConfig
from dedup.exact import DECISIONS, EXACT, ExactDuplicates
from dedup.minhash import sketch
from dedup.near import NearDuplicates


class Deduplicate(beam.PTransform):
    """PCollection[Document] -> {"documents": unique Documents, "dropped": Drop(stage="dedup", ...)}."""

    def __init__(self, cfg: DedupConfig = DedupConfig()):
        super().__init__()
        self.cfg = cfg

    def expand(self, docs):
        cfg = self.cfg
        decisions = []
        if cfg.exact or cfg.near:
            sketches = docs | "Sketch" >> beam.Map(sketch, cfg)
            if cfg.exact:
                exact = sketches | "Exact" >> ExactDuplicates()
                sketches = exact.survivors
                decisions.append(exact[DECISIONS])
            if cfg.near:
                decisions.append(sketches | "Near" >> NearDuplicates(cfg))
        decisions = (decisions or [docs.pipeline | "NoDecisions" >> beam.Create([])]) | "AllDecisions" >> beam.Flatten()
        kept = ({"doc": docs | "KeyByDocId" >> beam.Map(_packed), "decision": decisions}
                | "JoinDecisions" >> beam.CoGroupByKey()
                | "Apply" >> beam.ParDo(_Apply()).with_outputs(DROPPED, main="documents"))
        return {"documents": kept.documents, DROPPED: kept[DROPPED]}


def _packed(doc: Document):
    # The join is the one shuffle of whole documents, and the local runner holds a shuffle's whole input in memory
    # while the dedup stages run: the sketch has done its work and stays out; a text (when the document still
    # has one rather than tokens) crosses it zlib-compressed (~2x smaller on real pages), unpacked in _Apply.
    text = zlib.compress(doc.text.encode("utf-8"), 1) if doc.text else b""
    return doc.doc_id, (text, doc._replace(text="", fingerprint="", sig=b""))


def _unpacked(packed) -> Document:
    text, doc = packed
    return doc._replace(text=zlib.decompress(text).decode("utf-8")) if text else doc


class _Apply(Step):
    """Per doc_id: drop it if a decision names it, else keep it. Counts in/out/drop.<reason>."""
    stage = DEDUP

    def process(self, kv):
        doc_id, joined = kv
        docs = sorted(map(_unpacked, joined["doc"]), key=lambda d: (-d.karma, d.text, d.tokens, d))
        decisions = sorted(set(joined["decision"]))
        self.count("in", len(docs))
        if decisions:
            reason, survivor = decisions[0]
            drops = [(reason, f"survivor={survivor}", d) for d in docs]
        else:   # kept; one doc_id is one normalized URL: if it came twice, keep the better copy
            drops = [(EXACT, f"survivor={doc_id} (same doc_id)", d) for d in docs[1:]]
            if docs:
                yield from self.emit(docs[0])
        for reason, detail, d in drops:
            yield from self.emit(self.drop(reason, d.url, detail))
