"""Gopher / C4 quality rules: each one fires on a crafted text and not on normal English prose."""
import json
import time
from pathlib import Path

import apache_beam as beam
import pytest
from hypothesis import given, settings, strategies as st
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from pydoc_data.topics import topics

from crawl.text.quality import FilterQuality, QualityRules, quality_check, quality_drop_reason
from core.records import DROPPED, Document, NAMESPACE, doc_id_for

PAGES = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pages"
# Normal English prose that ships with Python: hard-wrapped lines, blank-line paragraphs (1,552 words).
ARTICLE = topics["execmodel"]
LINES = [ln for ln in ARTICLE.split("\n") if ln.strip()]
WORDS = ARTICLE.split()
OFF = QualityRules(**{f: None for f in (
    "min_words", "max_words", "min_mean_word_length", "max_mean_word_length", "max_symbol_ratio",
    "max_bullet_lines", "max_ellipsis_lines", "min_alpha_words", "min_stop_words", "max_dup_line_fraction",
    "max_dup_para_fraction", "max_dup_line_chars", "max_dup_para_chars", "max_top_ngram_chars",
    "max_dup_ngram_chars")}, lorem_ipsum=False)


def reflow(words, width):
    return "\n".join(" ".join(words[i:i + width]) for i in range(0, len(words), width))


def interleave_every(words, k, phrase):
    out = []
    for i, w in enumerate(words):
        out.append(w)
        if i % k == k - 1:
            out.extend(phrase.split())
    return out


NONSTOP = ("garden river mountain yellow quickly seven coffee window purple engine silver market "
           "winter basket candle forest pepper rocket violin marble").split()

CRAFTED = {   # reason -> (text, rules that enable the rule if it is off by default)
    "too_few_words": ("A short note with the words of a title.", None),
    "too_many_words": ("the cat " * 50_001, None),
    "mean_word_length": (" ".join(["to be or an ox at it is"] * 10), None),
    "symbol_ratio": (ARTICLE + "\n" + " ".join(f"#tag{i}" for i in range(len(WORDS) // 5)), None),
    "bullet_lines": ("\n".join("• " + ln for ln in LINES), None),
    "ellipsis_lines": ("\n".join(ln.rstrip(".") + " …" if i % 5 < 2 else ln for i, ln in enumerate(LINES)), None),
    "alpha_words": (ARTICLE + "\n" + " ".join(str(1000 + 7 * i) for i in range(len(WORDS) // 3)), None),
    "stop_words": (" ".join(NONSTOP[(i * 7) % len(NONSTOP)] + str(i) for i in range(300)), None),
    "dup_line_fraction": ("\n".join(x for ln in LINES for x in (ln, "Share this article")), None),
    "dup_line_chars": ("\n".join([ARTICLE] + [" ".join(WORDS[: len(WORDS) // 2])] * 2), None),
    # a one-line paragraph ("Advertisement") between paragraphs of several lines: lines pass, paragraphs fail
    "dup_para_fraction": ("\n\nAdvertisement\n\n".join(ARTICLE.split("\n\n")), None),
    "dup_para_chars": (ARTICLE + "\n\n" + "\n\n".join(sorted(ARTICLE.split("\n\n"), key=len)[-5:]),
                       QualityRules(max_dup_line_fraction=None, max_dup_line_chars=None)),
    "top_ngram_chars": (reflow(interleave_every(WORDS, 3, "click here"), 12), None),
    "dup_ngram_chars": (reflow(WORDS, 12) + "\n" + reflow(WORDS[: len(WORDS) * 2 // 5], 13), None),
    "lorem_ipsum": (ARTICLE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", None),
    "curly_bracket": (ARTICLE + "\nfunction f() { return 1; }", QualityRules(curly_bracket=True)),
    "javascript_notice": (ARTICLE + "\nPlease enable JavaScript to view the comments.",
                          QualityRules(javascript_notice=True)),
    "too_few_sentences": (" ".join(WORDS[:80]).replace(".", ",") + ".", QualityRules(min_sentences=5)),
    "terminal_punct_lines": ("\n".join(ln.rstrip(".:") for ln in LINES),
                             QualityRules(min_terminal_punct_lines=0.5)),
}


def test_normal_article_passes_default_and_optional_rules():
    assert quality_check(ARTICLE) == (None, "")
    everything_on = QualityRules(lorem_ipsum=True, javascript_notice=True, min_sentences=5,
                                 min_terminal_punct_lines=0.12)
    assert quality_drop_reason(ARTICLE, everything_on) is None


@pytest.mark.parametrize("reason", sorted(CRAFTED))
def test_each_rule_fires_on_its_crafted_text(reason):
    text, rules = CRAFTED[reason]
    rules = rules or QualityRules()
    got, detail = quality_check(text, rules)
    assert got == reason, detail
    assert quality_drop_reason(text, OFF) is None   # every rule can be switched off


def test_optional_c4_rules_are_off_by_default():
    for reason in ("curly_bracket", "javascript_notice", "too_few_sentences", "terminal_punct_lines"):
        assert quality_drop_reason(CRAFTED[reason][0]) is None, reason


def test_thresholds_are_thresholds():
    text = CRAFTED["dup_ngram_chars"][0]   # 2/7 of the text repeats, plus the article's own few repeats
    assert quality_drop_reason(text, QualityRules(max_dup_ngram_chars=[[5, 0.35]])) is None
    assert quality_check(text, QualityRules(max_dup_ngram_chars=[[5, 0.25]])) == ("dup_ngram_chars", "5-gram 0.30 > 0.25")
    assert QualityRules(max_top_ngram_chars=[[3, 0.1], [2, 0.2]]).max_top_ngram_chars == ((2, 0.2), (3, 0.1))
    assert quality_drop_reason(" ".join(WORDS[:60]), QualityRules(min_words=61)) == "too_few_words"


def _ngram_chars_by_hand(words, k):
    """The two n-gram measures by their plain definition, with tuples and a dict: (the possible values of the
    characters in all occurrences of the most frequent k-gram, one per tied gram, or {0} when none repeats;
    the characters of the words inside repeated k-grams after their first occurrence)."""
    grams = [tuple(words[i:i + k]) for i in range(len(words) - k + 1)]
    counts = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    best = max(counts.values(), default=0)
    tops = {sum(map(len, g)) * c for g, c in counts.items() if c == best} if best >= 2 else {0}
    seen, covered = set(), set()
    for i, g in enumerate(grams):
        if g in seen:
            covered.update(range(i, i + k))
        seen.add(g)
    return tops, sum(len(words[i]) for i in covered)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "bb", "the", "cat", "sat", "x", "mat"]), max_size=60), st.integers(1, 6))
def test_ngram_measures_match_their_definition(words, k):
    from crawl.text.quality import _NGrams
    grams = _NGrams(words, list(map(len, words)))
    tops, dup = _ngram_chars_by_hand(words, k)
    assert grams.top_chars(k) in tops    # one of the tied grams (the hashes pick which)
    assert grams.dup_chars(k) == dup


def test_fast_on_a_5000_word_document():
    doc = topics["types"]   # Python's "standard type hierarchy" chapter, 5,503 words
    assert 4500 < len(doc.split()) < 6500 and quality_drop_reason(doc) is None
    quality_check(doc)
    t0 = time.perf_counter()
    for _ in range(10):
        quality_check(doc)
    per_doc = (time.perf_counter() - t0) / 10
    assert per_doc < 0.05, per_doc   # a few ms here; generous bound for a loaded CI machine


@pytest.fixture(scope="module")
def english_pages():
    """Main text of the corpus pages that are English by both their lang attribute and py3langid."""
    if not (PAGES / "expectations.json").exists():
        pytest.skip("../shared/corpus/pages absent")
    import py3langid
    import trafilatura
    expectations = json.loads((PAGES / "expectations.json").read_text())
    texts = {}
    for name, exp in sorted(expectations.items()):
        if exp["lang_attr"] != "en" or exp["is_wikipedia"]:
            continue
        text = trafilatura.extract((PAGES / name).read_bytes(), url=exp["url"]) or ""
        if text and py3langid.classify(text)[0] == "en":
            texts[name] = text
    return texts


def test_real_english_pages_mostly_pass(english_pages):
    reasons = {name: quality_drop_reason(text) for name, text in english_pages.items()}
    passed = sum(r is None for r in reasons.values())
    rate = passed / len(reasons)
    print(f"\nquality: {passed}/{len(reasons)} English corpus pages pass ({rate:.1%}); dropped: "
          + ", ".join(f"{n}={r}" for n, r in sorted(reasons.items()) if r))
    assert len(reasons) >= 80 and rate >= 0.9


def doc(text, url):
    return Document(doc_id_for(url), url, text, 10, ("programming",), 1_500_000_000)


def test_filter_quality_beam_counts_every_drop():
    docs = [doc(ARTICLE, "https://a.example/ok"), doc(CRAFTED["lorem_ipsum"][0], "https://b.example/lorem"),
            doc("Too short.", "https://c.example/short")]
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create(docs) | FilterQuality()
    assert_that(out["documents"] | beam.Map(lambda d: d.url), equal_to(["https://a.example/ok"]), label="Kept")
    assert_that(out[DROPPED] | beam.Map(lambda d: (d.stage, d.reason, d.url)),
                equal_to([("quality", "lorem_ipsum", "https://b.example/lorem"),
                          ("quality", "too_few_words", "https://c.example/short")]), label="Dropped")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    assert counters == {"quality.in": 3, "quality.out": 1, "quality.drop.lorem_ipsum": 1,
                        "quality.drop.too_few_words": 1}
