"""Extraction and the document rules, on real pages; the per-page time bound is exact (never a partial text)."""
import json

import apache_beam as beam
import pytest

from conftest import beam_pipeline, counters
from crawl.text.extract import ExtractConfig, document_from_page, identify_language
from crawl.text.pool import ExtractPool
from crawl.text.transform import ExtractDocuments
from core.records import Document, Link, Page


def page(body, url="http://example.com/a", final_url=None, encoding=""):
    link = Link(url, "example.com", 7, ("science",), 1400000000, 1)
    return Page(link, final_url or url, 200, "text/html", body, encoding)


@pytest.fixture(scope="module")
def real_pages(corpus):
    expectations = json.loads((corpus / "pages" / "expectations.json").read_text())
    english = [n for n, e in sorted(expectations.items()) if e["lang_attr"] == "en" and not e["is_wikipedia"]]
    german = [n for n, e in sorted(expectations.items()) if e["lang_attr"] == "de"]
    return {name: (corpus / "pages" / name).read_bytes() for name in english[:6] + german[:3]}, english, german


def test_real_pages(real_pages):
    bodies, english, german = real_pages
    cfg = ExtractConfig(timeout=None)
    docs = [document_from_page(page(bodies[n]), cfg) for n in english[:6]]
    assert sum(isinstance(d, Document) for d in docs) >= 5
    d = next(d for d in docs if isinstance(d, Document))
    assert identify_language(d.text)[0] == "en" and d.karma == 7 and d.subreddits == ("science",) and len(d.doc_id) == 16
    assert [document_from_page(page(bodies[n]), cfg)[0] for n in german[:3]].count("not_english") >= 2


def test_fast_mode_skips_the_fallback_extractors(real_pages, monkeypatch):
    """extract.fast reaches trafilatura: without it every page is compared with the fallback extractors
    (readability, jusText), with it none is, and the English pages still give Documents."""
    import trafilatura.core
    calls = []
    real = trafilatura.core.compare_extraction
    monkeypatch.setattr(trafilatura.core, "compare_extraction", lambda *a: calls.append(1) or real(*a))
    bodies, english, _ = real_pages
    for fast in (False, True):
        calls.clear()
        docs = [document_from_page(page(bodies[n]), ExtractConfig(timeout=None, fast=fast)) for n in english[:6]]
        assert sum(isinstance(d, Document) for d in docs) >= 5
        assert len(calls) == (0 if fast else 6)


def test_document_rules():
    cfg = ExtractConfig(timeout=None)
    assert document_from_page(page(b"<html></html>"), cfg)[0] == "no_main_text"
    short = b"<html><body><article><p>Two short sentences. That is all.</p></article></body></html>"
    assert document_from_page(page(short), cfg)[0] == "too_short"
    assert document_from_page(page(short, final_url="https://en.wikipedia.org/wiki/X"), cfg)[0] == "wikipedia"
    # An undecodable body with a bogus charset never raises.
    assert isinstance(document_from_page(page(b"\xff\xfe\x00<p>\x80\x81</p>", encoding="no-such-codec"), cfg), tuple)


def test_config_is_checked():
    with pytest.raises(ValueError):
        ExtractConfig(timeout=-1)
    with pytest.raises(ValueError):
        ExtractConfig(batch_size=0)


def test_timeout_is_exact_never_partial(real_pages):
    """A page over its time ends as extract_timeout every time; no partial Document slips through."""
    bodies, english, _ = real_pages
    big = max(bodies.values(), key=len)
    pages = [page(big)] * 4
    pool = ExtractPool(ExtractConfig(timeout=0.002, language=""), processes=1)
    try:
        results = pool.map(pages)
    finally:
        pool.close()
    assert [r[0] for r in results] == ["extract_timeout"] * 4
    pool = ExtractPool(ExtractConfig(timeout=30, language=""), processes=2)
    try:
        ok = pool.map(pages)
    finally:
        pool.close()
    assert all(isinstance(r, Document) for r in ok) and len({r.text for r in ok}) == 1


def test_extract_documents_counts_add_up(real_pages):
    bodies, english, german = real_pages
    pages = [page(bodies[n], url=f"http://example.com/{i}") for i, n in enumerate(english[:4] + german[:2])]
    pages.append(page(b"<html></html>", url="http://example.com/empty"))
    p = beam_pipeline()
    _ = p | beam.Create(pages) | ExtractDocuments(ExtractConfig(processes=2, batch_size=3))
    c = counters(p.run())
    assert c["extract.in"] == 7
    assert c["extract.in"] == c.get("extract.out", 0) + sum(v for k, v in c.items() if k.startswith("extract.drop."))
    assert c["extract.drop.no_main_text"] == 1 and c.get("extract.drop.not_english", 0) >= 1
