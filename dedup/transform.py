"""Deduplicate: Documents -> unique Documents + Drops (stage "dedup"), as one composite Beam transform.

    documents -> Sketch: (fingerprint, Entry(doc_id, karma, band keys,   one pass, the only CPU-heavy step
                         signature or payload ref))
              -> ExactDuplicates: GroupByKey fingerprint, keep the best   decisions "exact_duplicate"
              -> NearDuplicates: LSH bands, verify, components, survivor  decisions "near_duplicate"
    documents + decisions -> GroupByKey doc_id -> kept | Drop               the only shuffle of whole documents
                                                                          (their tokens left in payload files, or
                                                                          their text zlib-compressed across it)

Only sketches (a few hundred bytes, ~0.2 KB when the signature waits in a payload file) travel through the dedup
shuffles; documents are joined back once, by doc_id, at the end. Every decision is a function of sets
(fingerprint groups, buckets, components) and the survivor rule (highest karma, then smallest doc_id), so the
output does not depend on bundle order or runner.
Counters are taken at the join, where every input document is seen exactly once:
dedup.in == dedup.out + dedup.drop.exact_duplicate + dedup.drop.near_duplicate.
"""
from __future__ import annotations

import pickle
import zlib

import apache_beam as beam

from core.records import DEDUP, DROPPED, Document, Step
from dedup.config import DedupConfig
from dedup.exact import DECISIONS, EXACT, ExactDuplicates
from dedup.index import OLD_RANK, old_entries, open_corpus
from dedup.minhash import banding, entry, sketch
from dedup.near import NearDuplicates


class Deduplicate(beam.PTransform):
    """PCollection[Document] -> {"documents": unique Documents, "dropped": Drop(stage="dedup", ...)}."""

    def __init__(self, cfg: DedupConfig = DedupConfig(), payload_dir: str | None = None, corpus: tuple = ()):
        super().__init__()
        self.cfg = cfg
        self.payload_dir = payload_dir   # where Documents with a `payload` reference keep their signature
        # sketch index folders of an existing corpus (dedup/index.py): its documents that share a fingerprint or
        # a band with a new one join the dedup as members that always survive and are never emitted
        self.corpus = tuple(corpus)

    def expand(self, docs):
        cfg = self.cfg
        decisions = []
        if cfg.exact or cfg.near:
            bands, rows = banding(cfg)
            keyed = docs | "Sketch" >> beam.Map(_keyed_entry, cfg, bands, rows)
            if self.corpus:
                old = keyed | "CorpusMatches" >> beam.FlatMap(_corpus_matches, self.corpus, bands)
                keyed = (keyed, old) | "WithCorpus" >> beam.Flatten()
            sketches = keyed | "Entries" >> beam.Values()
            if cfg.exact:
                exact = keyed | "Exact" >> ExactDuplicates()
                sketches = exact.survivors
                decisions.append(exact[DECISIONS])
            if cfg.near:
                decisions.append(sketches | "Near" >> NearDuplicates(cfg, self.payload_dir))
        decisions = (decisions or [docs.pipeline | "NoDecisions" >> beam.Create([])]) | "AllDecisions" >> beam.Flatten()
        # a join by doc_id of one byte string per value (a tag byte, then the document or the decision): the local
        # runner holds it decoded, and a CoGroupByKey would add a (tag, value) tuple to every document
        kept = ((docs | "KeyByDocId" >> beam.Map(_packed), decisions | "PackDecisions" >> beam.Map(_packed_decision))
                | "BothSides" >> beam.Flatten()
                | "JoinDecisions" >> beam.GroupByKey()
                | "Apply" >> beam.ParDo(_Apply()).with_outputs(DROPPED, main="documents"))
        return {"documents": kept.documents, DROPPED: kept[DROPPED]}


def _keyed_entry(doc: Document, cfg: DedupConfig, bands: int, rows: int):
    """(fingerprint, Entry): the exact shuffle needs the fingerprint as its key and the id and survivor rank
    (karma, raised for documents first posted before `prefer_first_seen_before`); the bands need their keys,
    computed here; the signature goes on only where no payload file holds it."""
    sk = sketch(doc, cfg)
    if cfg.prefer_first_seen_before and doc.created_utc < cfg.prefer_first_seen_before:
        sk = sk._replace(karma=OLD_RANK + sk.karma)
    return sk.fingerprint, entry(sk, bands, rows, doc.payload if cfg.near else "")


def _corpus_matches(keyed, corpus: tuple, bands: int):
    """The corpus documents (dedup/index.py) sharing a fingerprint or an LSH band with one new document."""
    fingerprint, e = keyed
    return list(old_entries(open_corpus(corpus), fingerprint, e, bands))


_DOC, _DECISION = b"D", b"X"


def _packed(doc: Document):
    # The join is the one shuffle of whole documents, and the local runner holds a shuffle's whole input in memory
    # while the dedup stages run: the sketch has done its work and stays out; a text (when the document still
    # has one rather than tokens) crosses it zlib-compressed (~2x smaller on real pages), unpacked in _Apply.
    # The whole value is one byte string of the fields as a plain tuple: the local runner keeps a shuffle's values
    # as Python objects, and one bytes object is ~0.2 KB where a Document of a few short strings is ~0.5 KB.
    text = zlib.compress(doc.text.encode("utf-8"), 1) if doc.text else b""
    return doc.doc_id, _DOC + pickle.dumps((text, doc.doc_id, doc.url, doc.karma, doc.subreddits, doc.created_utc,
                                            doc.tokens, doc.payload), protocol=5)


def _unpacked(packed) -> Document:
    text, doc_id, url, karma, subreddits, created_utc, tokens, payload = pickle.loads(packed[1:])
    return Document(doc_id, url, zlib.decompress(text).decode("utf-8") if text else "", karma, subreddits,
                    created_utc, tokens=tokens, payload=payload)


def _packed_decision(kv):
    doc_id, decision = kv
    return doc_id, _DECISION + pickle.dumps(tuple(decision), protocol=5)


class _Apply(Step):
    """Per doc_id: drop it if a decision names it, else keep it. Counts in/out/drop.<reason>."""
    stage = DEDUP

    def process(self, kv):
        doc_id, values = kv
        docs = sorted((_unpacked(v) for v in values if v[:1] == _DOC), key=lambda d: (-d.karma, d.text, d.tokens, d))
        decisions = sorted({pickle.loads(v[1:]) for v in values if v[:1] == _DECISION})
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
