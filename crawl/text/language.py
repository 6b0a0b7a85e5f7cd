"""Language identification of a main text: CLD2 by default, py3langid as the alternative.

CLD2 (Chromium's Compact Language Detector 2, through `pycld2`, whose wheel carries the model compiled in: works
offline) is the fast identifier of the field (C4's and OSCAR's predecessors used it; CLD3/fastText came later). On the
205 main texts of the shared corpus pages it gives the same keep/drop verdicts as py3langid at about 1/15 of the
cost (`python bench/langid.py`). fastText's lid.176 was measured too: ~2x faster than py3langid only, more verdicts
changed on mixed-language pages, and its model is not in any wheel that installs cleanly (the `fasttext` package
builds from source), so it is not used.

The score is what each identifier means by it: for CLD2 the share of the text (0-1) it assigns to the top language,
for py3langid the normalized probability. Either way a page is kept when its language is `language` with a score
of at least `min_language_score`.
"""
from __future__ import annotations

import functools
import re
from typing import Tuple

IDENTIFIERS = ("cld2", "py3langid")

# CLD2 refuses (pycld2.error "invalid UTF-8") control characters, surrogates and noncharacters anywhere in its input.
_CLD2_REFUSES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]|"
                           + "|".join(f"\\U{plane:04x}fffe|\\U{plane:04x}ffff" for plane in range(0x1, 0x11)))
# CLD2 uses a few older ISO 639 codes; say them the way py3langid and everyone else does.
_CLD2_CODES = {"iw": "he", "jw": "jv", "in": "id", "zh-Hant": "zh"}

_PY3LANGID = None


@functools.lru_cache(maxsize=1)
def cld2_languages() -> frozenset:
    import pycld2
    return frozenset(_CLD2_CODES.get(code, code) for _, code in pycld2.LANGUAGES if not code.startswith("xx-"))


def identify_language(text: str, chars: int = 1_000, identifier: str = "cld2") -> Tuple[str, float]:
    """(language code, score) of the first `chars` characters of `text`; ("un", 0.0) when nothing is recognized."""
    sample = text[:chars]
    if identifier == "py3langid":
        return _py3langid(sample)
    import pycld2
    try:
        _, _, found = pycld2.detect(sample, isPlainText=True)
    except (pycld2.error, UnicodeEncodeError):    # rare: clean, then ask again (cleaning every text costs 2x)
        try:
            _, _, found = pycld2.detect(_CLD2_REFUSES.sub(" ", sample), isPlainText=True)
        except pycld2.error:  # not expected after the substitution; a page is never lost to it
            return "un", 0.0
    code, percent = found[0][1], found[0][2]
    return _CLD2_CODES.get(code, code), percent / 100.0


def _py3langid(sample: str) -> Tuple[str, float]:
    global _PY3LANGID
    if _PY3LANGID is None:    # loading the model costs ~2 s: only when asked for
        import py3langid.langid as langid
        _PY3LANGID = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)
    lang, score = _PY3LANGID.classify(sample)
    return lang, float(score)
