"""Language identification: CLD2 by default, the same verdicts as py3langid on real pages, total on any text."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawl.text.extract import ExtractConfig, extract_text
from crawl.text.language import identify_language


def keeps_english(text: str, identifier: str) -> bool:
    lang, score = identify_language(text, 1_000, identifier)
    return lang == "en" and score >= ExtractConfig().min_language_score


@pytest.fixture(scope="module")
def main_texts(corpus):
    """(lang attribute, main text) of every 3rd corpus page: English and German, as the pipeline extracts them."""
    expectations = json.loads((corpus / "pages" / "expectations.json").read_text())
    out = []
    for name, e in sorted(expectations.items())[::3]:
        text = (extract_text((corpus / "pages" / name).read_bytes(), e["url"]) or "").strip()
        if len(text) >= ExtractConfig().min_chars:
            out.append((e["lang_attr"], text))
    return out


def test_cld2_is_the_default_and_agrees_with_py3langid_on_real_pages(main_texts):
    assert ExtractConfig().language_identifier == "cld2"
    assert len(main_texts) >= 50 and {lang for lang, _ in main_texts} >= {"en", "de"}
    cld2 = [keeps_english(text, "cld2") for _, text in main_texts]
    before = [keeps_english(text, "py3langid") for _, text in main_texts]
    assert cld2 == before                       # bench/langid.py: the same on all 205 pages
    german = [keep for (lang, _), keep in zip(main_texts, cld2) if lang == "de"]
    assert german and sum(german) <= len(german) // 10


def test_a_mix_is_judged_on_its_first_characters(main_texts):
    english = next(t for lang, t in main_texts if lang == "en" and keeps_english(t, "cld2"))
    german = next(t for lang, t in main_texts if lang == "de" and not keeps_english(t, "cld2"))
    assert identify_language(german[:1_000] + "\n" + english)[0] == "de"
    assert keeps_english(english[:1_000] + "\n" + german, "cld2")


@given(st.text(max_size=300))
def test_any_text_gets_an_answer(text):
    # CLD2 itself refuses control characters, surrogates and noncharacters ("invalid UTF-8"): never our problem
    lang, score = identify_language(text)
    assert isinstance(lang, str) and lang and 0.0 <= score <= 1.0


@pytest.mark.parametrize("text", ["\ud800 lone surrogate " * 20, "\x00\x7f\x85\ufffe\U0010ffff" * 50, ""])
def test_text_cld2_refuses_is_cleaned_first(text):
    assert 0.0 <= identify_language(text)[1] <= 1.0


def test_config_checks_the_identifier_and_its_codes():
    assert ExtractConfig(language="he").language == "he"            # CLD2 says "iw": we say "he"
    with pytest.raises(ValueError, match="language_identifier"):
        ExtractConfig(language_identifier="fasttext")
    with pytest.raises(ValueError, match="cld2 knows"):
        ExtractConfig(language="english")
    with pytest.raises(ValueError, match="py3langid knows"):
        ExtractConfig(language="english", language_identifier="py3langid")
