"""Document quality filters in the Gopher / C4 tradition: drop extracted pages that are not prose.

GPT-2 only says WebText got "heuristic based cleaning"; these are the published heuristics everyone reuses.
Gopher = Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
appendix A.1.1 (MassiveText quality filters) and table A1 (repetition thresholds).
C4 = Raffel et al. 2020, "Exploring the Limits of Transfer Learning ...", section 2.2 (cleaning C4).
FineWeb = Penedo et al. 2024 (terminal-punctuation line ratio as a document rule, 0.12).

Every rule has its own threshold and is disabled with None (False for the yes/no C4 rules). The first failing
rule names the drop reason. Words are whitespace tokens with surrounding punctuation stripped (tokens that are
only punctuation are not words); repetition works on lower-cased words, lines split on newlines (blank ones
ignored) and paragraphs split on blank lines. All work is linear in the text length (n-grams are hashed in
numpy). The rules assume English (stop words): run them after the language filter.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from itertools import count, repeat
from typing import Optional, Tuple

import apache_beam as beam
import numpy as np

from core.records import DETAIL_CHARS, DROPPED, QUALITY, Document, Drop, Step

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
PUNCT = string.punctuation + "“”‘’«»…–—•·‚„¡¿"
BULLETS = ("•", "●", "◦", "‣", "⁃", "▪", "■", "-", "*", "·")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "”", "'", "’", ")", "]", ":")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?:\s|$)")
JAVASCRIPT_NOTICE = re.compile(r"(enable|turn on|activate|requires?)\s+javascript|javascript\s+(is\s+)?"
                               r"(disabled|not enabled|required|must be enabled)", re.IGNORECASE)


@dataclass(frozen=True)
class QualityRules:
    # --- Gopher quality filters (Rae et al. 2021, A.1.1)
    min_words: Optional[int] = 50                 # documents with fewer words are dropped (too_few_words)
    max_words: Optional[int] = 100_000            # documents with more words are dropped (too_many_words)
    min_mean_word_length: Optional[float] = 3.0   # mean word length below this is dropped
    max_mean_word_length: Optional[float] = 10.0   # mean word length above this is dropped
    max_symbol_ratio: Optional[float] = 0.1          # "#" per word, and "..."/"…" per word, each
    max_bullet_lines: Optional[float] = 0.9          # fraction of lines starting with a bullet
    max_ellipsis_lines: Optional[float] = 0.3        # fraction of lines ending with an ellipsis
    min_alpha_words: Optional[float] = 0.8           # fraction of words with an alphabetic character
    min_stop_words: Optional[int] = 2                # occurrences of Gopher's eight stop words
    stop_words: Tuple[str, ...] = GOPHER_STOP_WORDS   # the, be, to, of, and, that, have, with
    # --- Gopher repetition filters (Rae et al. 2021, table A1)
    max_dup_line_fraction: Optional[float] = 0.30    # lines that repeat an earlier line / lines
    max_dup_para_fraction: Optional[float] = 0.30   # paragraphs that repeat an earlier paragraph / paragraphs
    max_dup_line_chars: Optional[float] = 0.20       # characters in repeated lines / characters
    max_dup_para_chars: Optional[float] = 0.20    # characters in repeated paragraphs / characters
    max_top_ngram_chars: Optional[Tuple[Tuple[int, float], ...]] = ((2, 0.20), (3, 0.18), (4, 0.16))   # (n, max share of characters in the most common n-gram)
    max_dup_ngram_chars: Optional[Tuple[Tuple[int, float], ...]] = (  # (n, max share of chars in repeated n-grams)
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    # --- C4 (Raffel et al. 2020), as document-level rules
    lorem_ipsum: bool = True                         # placeholder text
    curly_bracket: bool = False                      # C4 drops any "{" (code); WebText keeps code-ish pages
    javascript_notice: bool = False                  # C4 drops lines about JavaScript; here: an "enable JS" notice
    min_sentences: Optional[int] = None              # C4 used 5
    min_terminal_punct_lines: Optional[float] = None  # C4 keeps only such lines; FineWeb: 0.12 of lines

    def __post_init__(self):
        for name in ("max_top_ngram_chars", "max_dup_ngram_chars"):   # TOML gives lists of lists
            value = getattr(self, name)
            if value is not None:
                pairs = tuple((int(n), float(t)) for n, t in value)
                if any(n < 1 for n, _ in pairs):
                    raise ValueError(f"quality.{name}: n-gram sizes must be >= 1, not {value!r}")
                object.__setattr__(self, name, tuple(sorted(pairs)))
        object.__setattr__(self, "stop_words", tuple(w.lower() for w in self.stop_words))


def quality_drop_reason(text: str, rules: QualityRules = QualityRules()) -> Optional[str]:
    """The name of the first rule `text` fails, or None if it passes them all."""
    return quality_check(text, rules)[0]


def quality_check(text: str, r: QualityRules = QualityRules()) -> Tuple[Optional[str], str]:
    """(reason, detail) for the first failing rule, or (None, "")."""
    low = text.lower()
    words = list(filter(None, map(str.strip, low.split(), repeat(PUNCT))))   # lower-cased, C-speed
    n = len(words)
    # --- length
    if r.min_words is not None and n < r.min_words:
        return "too_few_words", f"{n} < {r.min_words}"
    if r.max_words is not None and n > r.max_words:
        return "too_many_words", f"{n} > {r.max_words}"
    if n == 0:
        return None, ""   # no words and no word-count rule: the word rules below are undefined
    # --- Gopher quality
    word_chars = list(map(len, words))
    total_word_chars = sum(word_chars)
    mean = total_word_chars / n
    if ((r.min_mean_word_length is not None and mean < r.min_mean_word_length)
            or (r.max_mean_word_length is not None and mean > r.max_mean_word_length)):
        return "mean_word_length", f"{mean:.2f}"
    if r.max_symbol_ratio is not None:
        hashes, ellipses = text.count("#"), text.count("...") + text.count("…")
        if max(hashes, ellipses) / n > r.max_symbol_ratio:
            return "symbol_ratio", f"#={hashes} ellipses={ellipses} words={n}"
    lines = list(filter(None, map(str.strip, text.split("\n"))))
    if lines and r.max_bullet_lines is not None:
        frac = sum(map(str.startswith, lines, repeat(BULLETS))) / len(lines)
        if frac > r.max_bullet_lines:
            return "bullet_lines", f"{frac:.2f}"
    if lines and r.max_ellipsis_lines is not None:
        frac = sum(map(str.endswith, lines, repeat(ELLIPSES))) / len(lines)
        if frac > r.max_ellipsis_lines:
            return "ellipsis_lines", f"{frac:.2f}"
    if r.min_alpha_words is not None:
        mixed = [w for w in words if not w.isalpha()]   # few: numbers, "e-mail", "don't", "3rd"
        frac = (n - sum(not any(c.isalpha() for c in w) for w in mixed)) / n
        if frac < r.min_alpha_words:
            return "alpha_words", f"{frac:.2f}"
    if r.min_stop_words is not None:
        found = sum(map(frozenset(r.stop_words).__contains__, words))
        if found < r.min_stop_words:
            return "stop_words", f"{found} < {r.min_stop_words}"
    # --- Gopher repetition
    if lines:
        dup_n, dup_chars = _repeats(lines)
        if r.max_dup_line_fraction is not None and dup_n / len(lines) > r.max_dup_line_fraction:
            return "dup_line_fraction", f"{dup_n}/{len(lines)}"
        if r.max_dup_line_chars is not None and dup_chars / len(text) > r.max_dup_line_chars:
            return "dup_line_chars", f"{dup_chars / len(text):.2f}"
    paras = list(filter(None, map(str.strip, PARAGRAPH_BREAK.split(text))))
    if paras:
        dup_n, dup_chars = _repeats(paras)
        if r.max_dup_para_fraction is not None and dup_n / len(paras) > r.max_dup_para_fraction:
            return "dup_para_fraction", f"{dup_n}/{len(paras)}"
        if r.max_dup_para_chars is not None and dup_chars / len(text) > r.max_dup_para_chars:
            return "dup_para_chars", f"{dup_chars / len(text):.2f}"
    if r.max_top_ngram_chars or r.max_dup_ngram_chars:
        grams = _NGrams(words, word_chars)
        for k, limit in r.max_top_ngram_chars or ():
            frac = grams.top_chars(k) / total_word_chars
            if frac > limit:
                return "top_ngram_chars", f"{k}-gram {frac:.2f} > {limit}"
        dups = r.max_dup_ngram_chars or ()
        for i, (k, limit) in enumerate(dups):
            frac = grams.dup_chars(k) / total_word_chars
            if frac > limit:
                return "dup_ngram_chars", f"{k}-gram {frac:.2f} > {limit}"
            if all(frac <= later for _, later in dups[i + 1:]):
                break   # what repeated (k+1)-grams cover, repeated k-grams cover too: longer ones pass
    # --- C4
    if r.lorem_ipsum and "lorem ipsum" in low:
        return "lorem_ipsum", ""
    if r.curly_bracket and "{" in text:
        return "curly_bracket", ""
    if r.javascript_notice and "javascript" in low:
        notice = JAVASCRIPT_NOTICE.search(text)
        if notice:
            return "javascript_notice", notice.group(0)
    if r.min_sentences is not None:
        sentences = len(SENTENCE_END.findall(text))
        if sentences < r.min_sentences:
            return "too_few_sentences", f"{sentences} < {r.min_sentences}"
    if lines and r.min_terminal_punct_lines is not None:
        frac = sum(map(str.endswith, lines, repeat(TERMINAL_PUNCT))) / len(lines)
        if frac < r.min_terminal_punct_lines:
            return "terminal_punct_lines", f"{frac:.2f}"
    return None, ""


def _repeats(items) -> Tuple[int, int]:
    """How many items repeat an earlier one, and their characters (the first occurrence is not counted)."""
    seen, n, chars = set(), 0, 0
    for it in items:
        if it in seen:
            n += 1
            chars += len(it)
        else:
            seen.add(it)
    return n, chars


_WORD_VALUES = np.empty(0, dtype=np.uint64)


def _word_values(n: int) -> np.ndarray:
    """At least n values of one fixed random sequence (seed 0): a word id's 64-bit value. numpy draws them one
    after another, so the first n are the same for any size drawn; the table is kept (up to 2^20 words) instead
    of drawn again for every document."""
    global _WORD_VALUES
    if len(_WORD_VALUES) >= n:
        return _WORD_VALUES
    values = np.random.default_rng(0).integers(1, 2**63, size=max(n, 2 * len(_WORD_VALUES), 4096), dtype=np.uint64)
    if len(values) <= 2**20:
        _WORD_VALUES = values
    return values


class _NGrams:
    """Word n-grams as 64-bit rolling hashes in numpy: linear work, no Python loop per n-gram."""

    def __init__(self, words, word_chars):
        # word -> position of its first occurrence (a word id); then a random 64-bit value per word id and
        # h_k[i] = h_{k-1}[i] * P + r[i + k - 1]  (mod 2**64)
        ids = np.fromiter(map({}.setdefault, words, count()), dtype=np.int64, count=len(words))
        self.r = _word_values(len(words))[ids]
        self.chars = np.asarray(word_chars, dtype=np.int64)
        self.cum = np.concatenate(([0], np.cumsum(self.chars)))
        self.h, self.k = self.r.copy(), 1

    def hashes(self, k: int) -> np.ndarray:
        if k < self.k:
            self.h, self.k = self.r.copy(), 1
        with np.errstate(over="ignore"):
            while self.k < k:
                self.h = self.h[:-1] * np.uint64(0x9E3779B97F4A7C15) + self.r[self.k:]
                self.k += 1
        return self.h

    def top_chars(self, k: int) -> int:
        """Word characters in all occurrences of the most frequent k-gram, if it repeats."""
        h = self.hashes(k)
        if len(h) == 0:
            return 0
        s = np.sort(h)   # runs of equal hashes; ties go to the smallest hash, as np.unique's order gives them
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        counts = np.diff(np.append(starts, len(s)))
        top = int(np.argmax(counts))
        if counts[top] < 2:
            return 0
        i = int(np.argmax(h == s[starts[top]]))   # its first occurrence: every one has the same words
        return int(counts[top]) * int(self.cum[i + k] - self.cum[i])

    def dup_chars(self, k: int) -> int:
        """Word characters inside repeated k-grams: every occurrence after the first, overlaps counted once."""
        h = self.hashes(k)
        if len(h) == 0:
            return 0
        order = np.argsort(h, kind="stable")   # within a run of equal hashes, the first occurrence comes first
        s = h[order]
        first = np.concatenate(([True], s[1:] != s[:-1]))
        if first.all():
            return 0
        repeat = np.ones(len(h), dtype=bool)
        repeat[order[first]] = False
        starts = np.flatnonzero(repeat)
        # +1 where a repeat starts, -1 k words later: a word is covered where the running sum is positive
        cover = np.bincount(starts, minlength=len(self.chars) + 1) - np.bincount(starts + k, minlength=len(self.chars) + 1)
        return int(self.chars[np.cumsum(cover[:-1]) > 0].sum())


# ---------------------------------------------------------------------------------------------- Beam
class QualityFilter(Step):
    """Stage "quality": Document -> the same Document, or Drop(reason = the first failing rule)."""
    stage = QUALITY

    def __init__(self, rules: QualityRules = QualityRules()):
        super().__init__()
        self.rules = rules

    def apply(self, doc: Document):
        return quality_drop(doc, self.rules) or doc


def quality_drop(doc: Document, rules: QualityRules = QualityRules()) -> Optional[Drop]:
    """Drop(stage "quality", the first failing rule) for a document that fails, else None. Shared by this stage
    and the per-document work in the extraction processes (pipeline/per_document.py)."""
    reason, detail = quality_check(doc.text, rules)
    return Drop(QUALITY, reason, doc.url, detail[:DETAIL_CHARS]) if reason else None


class FilterQuality(beam.PTransform):
    """Documents -> documents that pass the quality rules (tagged outputs: `documents`, `dropped`)."""

    def __init__(self, rules: QualityRules = QualityRules()):
        super().__init__()
        self.rules = rules

    def expand(self, docs):
        out = docs | "QualityRules" >> beam.ParDo(QualityFilter(self.rules)).with_outputs(DROPPED, main="documents")
        return {"documents": out.documents, DROPPED: out[DROPPED]}
