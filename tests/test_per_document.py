"""The per-document work in the extraction processes (pipeline/per_document.py): same verdicts, tokens and
sketches as the separate stages, counted as stage "quality", and the same shards and dedup decisions downstream."""
import hashlib
import html

import apache_beam as beam
import numpy as np
import pydoc_data.topics

from conftest import beam_pipeline, counters
from core.records import Document, Drop, Link, Page
from core.shard_format import read_manifest
from core.tokenizer import encode_document
from crawl.text.extract import ExtractConfig
from crawl.text.quality import QualityRules, quality_check
from crawl.text.transform import ExtractDocuments
from dedup import DedupConfig, Deduplicate
from dedup.minhash import sketch
from pipeline.config import ShardConfig
from pipeline.per_document import DocumentWork
from pipeline.shards.write import WriteShards

WORK = DocumentWork(QualityRules(), DedupConfig())


def docs():
    out = []
    for name, text in sorted(pydoc_data.topics.topics.items())[:40]:
        url = f"https://docs.python.org/3/reference/{name}"
        out.append(Document(hashlib.blake2b(url.encode(), digest_size=8).hexdigest(), url, text, 5, ("Python",),
                            1_500_000_000))
    return out


def test_same_verdicts_tokens_and_sketches_as_the_separate_stages():
    for doc in docs():
        reason, _ = quality_check(doc.text, QualityRules())
        done = WORK(doc)
        if reason:
            assert isinstance(done, Drop) and done.stage == "quality" and done.reason == reason
            continue
        assert done.text == "" and np.frombuffer(done.tokens, "<u2").tolist() == encode_document(doc.text)
        assert sketch(done) == sketch(doc)          # taken as filled, equal to the one computed from the text
    assert any(isinstance(WORK(d), Drop) for d in docs()) and any(isinstance(WORK(d), Document) for d in docs())


def _pages():
    pages = []
    texts = [d.text for d in docs() if isinstance(WORK(d), Document)][:5] + ["Too short to keep at all. " * 3]
    for i, text in enumerate(texts):
        paras = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())
        body = f"<html><body><article><h1>Topic {i}</h1>{paras}</article></body></html>".encode()
        url = f"http://example.com/topic-{i}"
        pages.append(Page(Link(url, "example.com", 3 + i, ("news",), 1400000000), url, 200, "text/html", body))
    return pages


def _check_filled(doc):
    # every document that leaves carries its tokens (ending with EOT) and its sketch instead of its text
    if not (doc.text == "" and doc.tokens[-2:] == np.array([50256], "<u2").tobytes() and doc.fingerprint
            and len(doc.sig) == 4 * DedupConfig().num_perm):
        raise AssertionError(f"not filled: {doc.url}")


def test_extraction_processes_do_the_quality_stage_and_counts_add_up():
    p = beam_pipeline()
    out = p | beam.Create(_pages()) | ExtractDocuments(ExtractConfig(processes=2, batch_size=2, language=""),
                                                        then=WORK)
    _ = out["documents"] | beam.Map(_check_filled)
    c = counters(p.run())
    assert c["extract.out"] == c["quality.in"] == 6 - c.get("extract.drop.too_short", 0)
    assert c["quality.in"] == c.get("quality.out", 0) + sum(v for k, v in c.items() if k.startswith("quality.drop."))
    assert c["quality.out"] >= 3 and c.get("quality.drop.too_few_words", 0) + c.get("extract.drop.too_short", 0) >= 1


def test_shards_and_dedup_decisions_are_the_same_from_filled_documents(tmp_path):
    plain = [d for d in docs() if isinstance(WORK(d), Document)]
    plain += [plain[0]._replace(doc_id="0" * 16, url="https://mirror.example/" + plain[0].url, karma=1)]  # a copy
    filled = [WORK(d) for d in plain]
    results = {}
    for name, batch in (("plain", plain), ("filled", filled)):
        out = tmp_path / name
        p = beam_pipeline()
        unique = (p | beam.Create(batch) | Deduplicate(DedupConfig()))
        _ = unique["documents"] | WriteShards(str(out), ShardConfig(), {"test": 1})
        c = counters(p.run())
        results[name] = ({s["name"]: s["sha256"] for s in read_manifest(out)["shards"]},
                         c.get("dedup.drop.exact_duplicate", 0))
    assert results["plain"] == results["filled"] and results["plain"][1] == 1
