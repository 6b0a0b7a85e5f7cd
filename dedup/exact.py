"""Exact duplicates: documents whose normalized text has the same fingerprint (see dedup.minhash).

Sketches are grouped by fingerprint; the survivor is picked by the shared rule (highest karma, then smallest
doc_id) in one pass over the group and the others are named in a second pass, so a huge group (a template page
served under thousands of URLs) is never sorted or held in memory: GroupByKey values are re-iterable.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Tuple

import apache_beam as beam

from dedup.packed import Unpacked, pack_sketch
from dedup.survivor import pick_survivor

EXACT = "exact_duplicate"
DECISIONS = "decisions"   # tag of (doc_id, (reason, survivor_doc_id)) for every document to drop


def exact_group(sketches: Iterable) -> Tuple[object, Iterator[Tuple[str, str]]]:
    """Survivor of one fingerprint group, and lazily (doc_id, survivor doc_id) for every other member."""
    survivor = pick_survivor(sketches)
    # a doc_id seen twice is one document (one normalized URL), never its own duplicate
    return survivor, ((s.doc_id, survivor.doc_id) for s in sketches if s.doc_id != survivor.doc_id)


class ExactDuplicates(beam.PTransform):
    """(fingerprint, sketch) pairs, or Sketches -> survivors (one per fingerprint; main output) and drop decisions
    (tag `decisions`). Anything with doc_id and karma is a sketch here (dedup.minhash.Sketch or Entry)."""

    def expand(self, sketches):
        return (sketches
                | "KeyByFingerprint" >> beam.Map(_keyed_packed)
                | "GroupByFingerprint" >> beam.GroupByKey()
                | "PickSurvivor" >> beam.ParDo(_ExactGroup()).with_outputs(DECISIONS, main="survivors"))


def _keyed_packed(s):
    # the whole corpus's entries wait in this shuffle while the fetch runs: as bytes, ~0.2 KB each, not ~0.5
    fingerprint, s = (s.fingerprint, s) if hasattr(s, "fingerprint") else s
    return fingerprint, pack_sketch(s)


class _ExactGroup(beam.DoFn):
    def process(self, kv):
        _, packed = kv
        survivor, losers = exact_group(Unpacked(packed))
        yield survivor
        for doc_id, survivor_id in losers:
            yield beam.pvalue.TaggedOutput(DECISIONS, (doc_id, (EXACT, survivor_id)))
