"""Exact duplicates: documents whose normalized text has the same fingerprint (see dedup.minhash).

Sketches are grouped by fingerprint, gathered SPREAD groups of fingerprints to a key (below); the survivor is
picked by the shared rule (highest karma, then smallest doc_id) in one pass over the group and the others are
named in a second pass.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator, List, Tuple

import apache_beam as beam

from core.gather import GatherBytes, framed, gather_key, records
from dedup.packed import pack_sketch, read_varint, unpack_sketch, varint
from dedup.survivor import pick_survivor

EXACT = "exact_duplicate"
DECISIONS = "decisions"   # tag of (doc_id, (reason, survivor_doc_id)) for every document to drop


def exact_group(sketches: Iterable) -> Tuple[object, Iterator[Tuple[str, str]]]:
    """Survivor of one fingerprint group, and lazily (doc_id, survivor doc_id) for every other member."""
    survivor = pick_survivor(sketches)
    # a doc_id seen twice is one document (one normalized URL), never its own duplicate
    return survivor, ((s.doc_id, survivor.doc_id) for s in sketches if s.doc_id != survivor.doc_id)


# The whole corpus's entries wait in this shuffle while the fetch runs, and the local runner holds a GroupByKey's
# input decoded: one key, one list and one value per document, ~0.5 KB even with the entry packed. Gathered
# (core/gather.py) into SPREAD keys by their fingerprint, a key's records travel as a few byte strings (~0.15 KB
# per document: fingerprint, packed entry, length), and the groups of equal fingerprints are found inside each.


def _gathered(kv):
    """(fingerprint, sketch) -> (its gathered key, framed fingerprint length + fingerprint + packed sketch)."""
    fingerprint, sk = kv
    fp = fingerprint.encode("utf-8")
    return gather_key(fp), framed(varint(len(fp)) + fp + pack_sketch(sk))


def fingerprint_groups(chunks) -> List[Tuple[str, List]]:
    """One gathered key's chunks -> (fingerprint, its sketches) per fingerprint, in fingerprint order; a group's
    members in the order of their bytes, so that every run sees them alike."""
    by_fingerprint = defaultdict(list)
    for body in sorted(bytes(r) for r in records(chunks)):
        n, i = read_varint(body, 0)
        by_fingerprint[body[i:i + n].decode("utf-8")].append(unpack_sketch(body[i + n:]))
    return sorted(by_fingerprint.items())


class ExactDuplicates(beam.PTransform):
    """(fingerprint, sketch) pairs, or Sketches -> survivors (one per fingerprint; main output) and drop decisions
    (tag `decisions`). Anything with doc_id and karma is a sketch here (dedup.minhash.Sketch or Entry)."""

    def expand(self, sketches):
        return (sketches
                | "KeyByFingerprint" >> beam.Map(lambda s: (s.fingerprint, s) if hasattr(s, "fingerprint") else s)
                | "Gather" >> beam.Map(_gathered)
                | "GroupByFingerprint" >> GatherBytes()
                | "PickSurvivor" >> beam.ParDo(_ExactGroup()).with_outputs(DECISIONS, main="survivors"))


class _ExactGroup(beam.DoFn):
    def process(self, kv):
        _, chunks = kv
        for _, sketches in fingerprint_groups(chunks):
            survivor, losers = exact_group(sketches)
            yield survivor
            for doc_id, survivor_id in losers:
                yield beam.pvalue.TaggedOutput(DECISIONS, (doc_id, (EXACT, survivor_id)))
