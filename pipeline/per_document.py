"""The per-document work after extraction, done where the text is extracted (the extraction processes).

Quality rules, the dedup sketch (exact fingerprint + MinHash signature) and the GPT-2 tokens each need the
text once and nothing else, so they run right after trafilatura in the same worker. What comes back to the
Beam worker is a Document whose `text` is "" and whose `tokens`, `fingerprint` and `sig` are filled: the main
process never holds, pickles or shuffles page texts (for a 3,000-character page, ~1.4 KB of uint16 tokens and
512 bytes of signature instead of the text and the work on it under one GIL). Deduplicate and WriteShards take
such Documents as they are, and plain Documents (text set) as before.

WritePayloads, fused right after the extraction (no shuffle in between), then writes the tokens and signatures
once to payload files in the run's `_payloads/` (core/payloads.py) and sends on Documents that carry a reference
(`payload`) instead of the tokens: the dedup join and the shard shuffle hold ~0.1 KB per document, not ~2-3 KB.
KeepDrops, fused beside it, writes the pages that extraction or the quality rules dropped to `.drops` files there,
so that every page decided is on disk within `commit_seconds`, and a rerun redoes none of them (pipeline/resume.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from core import payloads

from core.records import DROPPED, QUALITY, Document, Step
from core.tokenizer import encode_document
from crawl.text.quality import QualityRules, quality_drop
from dedup.config import DedupConfig
from dedup.minhash import sketch


@dataclass(frozen=True)
class DocumentWork:
    """Document (with text) -> Document (tokens, fingerprint, sig; no text) | Drop(stage "quality").
    Picklable, so ExtractDocuments can run it in its worker processes (`then=`)."""
    quality: QualityRules
    dedup: DedupConfig
    stage: str = QUALITY          # the stage whose in/out/drop counters this work answers for

    def warm_up(self) -> None:
        encode_document("warm up")       # loads the vocabulary once per worker, before its memory cap

    def __call__(self, doc: Document):
        drop = quality_drop(doc, self.quality)
        if drop is not None:
            return drop
        sk = sketch(doc, self.dedup) if (self.dedup.exact or self.dedup.near) else None
        tokens = np.asarray(encode_document(doc.text), dtype="<u2").tobytes()
        return doc._replace(text="", tokens=tokens, fingerprint=sk.fingerprint if sk else "",
                            sig=sk.sig if sk else b"")


# Drops that say more about the machine than the page (a dead or wedged worker, its memory cap): a rerun tries them
# again rather than replaying them.
TRANSIENT = frozenset({"extract_crashed", "extract_timeout", "extract_memory"})


class _Batched(beam.DoFn):
    """Buffers a bundle's elements and writes them in batches: `max_items`, or whatever waited `max_seconds`
    (checked as elements arrive), or the rest at the bundle's end. A killed run loses at most one batch."""

    def __init__(self, directory: str, max_items: int = 4096, max_seconds: float = 30.0):
        self.directory, self.max_items, self.max_seconds = directory, max_items, max_seconds

    def start_bundle(self):
        self.pending, self.size, self.since = [], 0, 0.0

    def _add(self, item, size: int = 0) -> bool:
        """Buffer `item`; True when the batch is due."""
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(item)
        self.size += size
        return len(self.pending) >= self.max_items or time.monotonic() - self.since >= self.max_seconds

    def _take(self):
        items, self.pending, self.size = self.pending, [], 0
        return items


class WritePayloads(_Batched):
    """Filled Documents -> the same Documents with `tokens` written to a payload file and replaced by `payload`
    (a reference; the signature stays, for the dedup sketch fused after this step, and is written too). A
    bundle's documents are written in files of at most `max_docs` documents / `max_bytes` of tokens /
    `max_seconds` of waiting, and sent on once their file is complete, so no reference ever names a file that is
    not there whole."""

    def __init__(self, directory: str, max_docs: int = 4096, max_bytes: int = 16 << 20, max_seconds: float = 30.0):
        super().__init__(directory, max_docs, max_seconds)
        self.max_docs, self.max_bytes = max_docs, max_bytes

    def process(self, doc: Document):
        if not doc.tokens:            # a plain Document (text, no tokens): nothing to write
            yield doc
            return
        if self._add(doc, len(doc.tokens)) or self.size >= self.max_bytes:
            yield from self._flush()

    def finish_bundle(self):
        yield from Step.windowed(self._flush())

    def _flush(self):
        docs = self._take()
        if not docs:
            return []
        refs = payloads.write(self.directory, ((d.doc_id, d.tokens, d.sig, d.fingerprint) for d in docs))
        return [d._replace(tokens=b"", payload=str(r)) for d, r in zip(docs, refs)]


class KeepDrops(_Batched):
    """Drops of extraction and the quality rules -> `.drops` files beside the payload files (nothing goes on: the
    Drops themselves still go to _drops/ from where they came). TRANSIENT ones are not kept. `job` (the key of
    the settings that decided them, pipeline/resume.py) goes into each file's metadata."""

    def __init__(self, directory: str, job: str = "", max_drops: int = 4096, max_seconds: float = 30.0):
        super().__init__(directory, max_drops, max_seconds)
        self.job = job

    def process(self, drop):
        if drop.reason not in TRANSIENT and self._add(tuple(drop)):
            payloads.write_drops(self.directory, self._take(), self.job)

    def finish_bundle(self):
        payloads.write_drops(self.directory, self._take(), self.job)


class WriteOutcomes(beam.PTransform):
    """ExtractDocuments' outputs ({"documents", "dropped"}) -> the documents with payload references; both
    outcomes written to `directory` as they come (WritePayloads, KeepDrops), fused with the extraction."""

    def __init__(self, directory: str, job: str = "", max_seconds: float = 30.0):
        super().__init__()
        self.directory, self.job, self.max_seconds = directory, job, max_seconds

    def expand(self, extracted):
        _ = extracted[DROPPED] | "KeepDrops" >> beam.ParDo(KeepDrops(self.directory, self.job,
                                                                      max_seconds=self.max_seconds))
        return extracted["documents"] | "Payloads" >> beam.ParDo(
            WritePayloads(self.directory, max_seconds=self.max_seconds))
