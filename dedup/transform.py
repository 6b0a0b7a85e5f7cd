"""Deduplicate: Documents -> unique Documents + Drops (stage "dedup"), as one composite Beam transform.

    documents -> Sketch: (fingerprint, Entry(doc_id, karma, band keys,   one pass, the only CPU-heavy step
                         signature or payload ref))
              -> ExactDuplicates (id and rank only): by fingerprint,      decisions "exact_duplicate"
                 keep the best
              -> NearDuplicates (every document): LSH band files,         decisions "near_duplicate"
                 verify, components, survivor
    documents + decisions -> gathered by doc_id -> kept | Drop            the only shuffle of whole documents
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
from collections import defaultdict

import apache_beam as beam

from core.records import DEDUP, DROPPED, Document, Step
from dedup.config import DedupConfig
from core.gather import GatherBytes, framed, gather_key, records
from dedup.exact import DECISIONS, EXACT, ExactDuplicates
from dedup.index import OLD_RANK, old_entries, open_corpus
from dedup.minhash import banding, entry, sketch
from dedup.near import NearDuplicates


class Deduplicate(beam.PTransform):
    """PCollection[Document] -> {"documents": unique Documents, "dropped": Drop(stage="dedup", ...)}."""

    def __init__(self, cfg: DedupConfig = DedupConfig(), payload_dir: str | None = None, corpus: tuple = (),
                 scratch_dir: str | None = None):
        super().__init__()
        self.cfg = cfg
        self.payload_dir = payload_dir   # where Documents with a `payload` reference keep their signature
        self.scratch_dir = scratch_dir   # where the LSH band files go (dedup/bands.py); a temporary folder if None
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
            if cfg.near:
                # Every document goes to the band files, here where it is sketched, exact duplicates too (a bucket
                # keeps the exact survivor of each fingerprint: dedup/bands.py), so no band keys go further.
                decisions.append(keyed | "Near" >> NearDuplicates(cfg, self.payload_dir, self.scratch_dir))
            if cfg.exact:   # what a fingerprint group needs of its members: the id and the survivor rank
                exact = (keyed
                         | "IdAndRank" >> beam.MapTuple(lambda fp, e: (fp, e._replace(keys=b"", sig=b"", ref="")))
                         | "Exact" >> ExactDuplicates())
                decisions.append(exact[DECISIONS])
        decisions = (decisions or [docs.pipeline | "NoDecisions" >> beam.Create([])]) | "AllDecisions" >> beam.Flatten()
        # The documents wait for this join from the fetch to the end of dedup: gathered by doc_id into SPREAD keys
        # (core/gather.py), the local runner holds ~0.2 KB of bytes per document, not a key, a list and a value.
        kept = ((docs | "GatherDocs" >> beam.Map(_packed), decisions | "GatherDecisions" >> beam.Map(_packed_decision))
                | "JoinDecisions" >> GatherBytes()
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
    # A record is the fields as a plain pickled tuple (no class reference), framed into its key's chunks.
    text = zlib.compress(doc.text.encode("utf-8"), 1) if doc.text else b""
    return gather_key(doc.doc_id.encode("utf-8")), framed(_DOC + pickle.dumps(
        (doc.doc_id, text, doc.url, doc.karma, doc.subreddits, doc.created_utc, doc.tokens, doc.payload), protocol=5))


def _unpacked(fields) -> Document:
    doc_id, text, url, karma, subreddits, created_utc, tokens, payload = fields
    return Document(doc_id, url, zlib.decompress(text).decode("utf-8") if text else "", karma, subreddits,
                    created_utc, tokens=tokens, payload=payload)


def _packed_decision(kv):
    doc_id, decision = kv
    return gather_key(doc_id.encode("utf-8")), framed(_DECISION + pickle.dumps((doc_id, tuple(decision)), protocol=5))


def joined(chunks):
    """One gathered key's records -> (doc_id, its documents, its decisions) per doc_id, in doc_id order."""
    docs, decisions = defaultdict(list), defaultdict(set)
    for record in records(chunks):
        fields = pickle.loads(record[1:])
        if record[:1] == _DOC:
            docs[fields[0]].append(_unpacked(fields))
        else:
            decisions[fields[0]].add(fields[1])
    for doc_id in sorted(docs.keys() | decisions.keys()):
        yield doc_id, docs.get(doc_id, []), decisions.get(doc_id, set())


class _Apply(Step):
    """Per doc_id of a gathered key: drop it if a decision names it, else keep it. Counts in/out/drop.<reason>."""
    stage = DEDUP

    def process(self, kv):
        for doc_id, docs, decisions in joined(kv[1]):
            yield from self.apply_one(doc_id, docs, decisions)

    def apply_one(self, doc_id, docs, decisions):
        docs = sorted(docs, key=lambda d: (-d.karma, d.text, d.tokens, d))
        decisions = sorted(decisions)
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
