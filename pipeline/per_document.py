"""The per-document work after extraction, done where the text is extracted (the extraction processes).

Quality rules, the dedup sketch (exact fingerprint + MinHash signature) and the GPT-2 tokens each need the
text once and nothing else, so they run right after trafilatura in the same worker. What comes back to the
Beam worker is a Document whose `text` is "" and whose `tokens`, `fingerprint` and `sig` are filled: the main
process never holds, pickles or shuffles page texts (for a 3,000-character page, ~1.4 KB of uint16 tokens and
512 bytes of signature instead of the text and the work on it under one GIL). Deduplicate and WriteShards take
such Documents as they are, and plain Documents (text set) as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
