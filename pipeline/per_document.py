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
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindows

from core import payloads

from core.records import QUALITY, Document
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


class WritePayloads(beam.DoFn):
    """Filled Documents -> the same Documents with `tokens` written to a payload file and replaced by `payload`
    (a reference; the signature stays, for the dedup sketch fused after this step, and is written too). A
    bundle's documents are written in files of at most `max_docs` documents / `max_bytes` of tokens and sent on
    once their file is complete, so no reference ever names a file that is not there whole."""

    def __init__(self, directory: str, max_docs: int = 4096, max_bytes: int = 16 << 20):
        self.directory, self.max_docs, self.max_bytes = directory, max_docs, max_bytes

    def start_bundle(self):
        self.pending, self.size = [], 0

    def process(self, doc: Document):
        if not doc.tokens:            # a plain Document (text, no tokens): nothing to write
            yield doc
            return
        self.pending.append(doc)
        self.size += len(doc.tokens)
        if len(self.pending) >= self.max_docs or self.size >= self.max_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for doc in self._flush():
            yield GlobalWindows.windowed_value(doc)

    def _flush(self):
        docs, self.pending, self.size = self.pending, [], 0
        if not docs:
            return []
        refs = payloads.write(self.directory, ((d.doc_id, d.tokens, d.sig, d.fingerprint) for d in docs))
        return [d._replace(tokens=b"", payload=str(r)) for d, r in zip(docs, refs)]
