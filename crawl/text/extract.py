"""Page -> Document rules, with no Beam and no processes: trafilatura main text, then the cheap document rules
(Wikipedia, length, English).

trafilatura's settings are fixed for determinism (`deduplicate=False`: its LRU-based dedup depends on call order;
we dedup ourselves). Extraction can run unbounded on pathological HTML: crawl/text/pool.py runs these functions
on worker processes under a wall-clock alarm, and crawl/text/transform.py is the Beam stage around the pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from core.records import Document, Page, doc_id_for
from crawl.links import LinkRules, is_wikipedia
from crawl.text.language import IDENTIFIERS, cld2_languages, identify_language


# py3langid's model classes (a test checks this list against the model; loading it here would cost ~2 s)
PY3LANGID_LANGUAGES = frozenset("""ace af am an ar ary arz as az ba bcl be bg bn br bs ca crh cs cy da de dz el en eo es et eu
    ext fa fi fo fr fuv fy ga gcf gcr gd gl gom grc gu gug guw ha hbo he hi hr ht hu hy id ig is it ja jv ka kab kik kk
    km kn ko ku ky la lb lg lij ln lo lt ltg lv mg mk ml mn mr ms mt my ne nl nn no nso oc om or pa pcm pl ps pt qu ro
    ru rw sa sdh se si sk sl sn so sq sr st sv sw ta te tg th tk tl tr tt ug uk ur uz uzs vec vi vo wa wuu xh yo yue
    zh zu zxx""".split())


@dataclass(frozen=True)
class ExtractConfig:
    timeout: Optional[float] = 20.0   # seconds per page; None/0: extract in the calling thread with no bound
    processes: int = 0                # extraction processes per Beam worker; 0: decided by runner.py
    batch_size: int = 64              # pages handed to the pool at once
    min_chars: int = 200              # cheap early cut before language ID; the word-level rules are in quality
    language: str = "en"              # GPT-2 removed non-English pages; "" keeps every language
    language_identifier: str = "cld2"  # "cld2" (fast, model in its wheel) or "py3langid" (webtext before 2026-12)
    min_language_score: float = 0.65  # cld2: share of the text in `language`; py3langid: its probability
    language_chars: int = 1_000       # identify on the first N chars: same verdicts as 3k and 10k on the 205 corpus pages
    include_tables: bool = False                  # keep table text (trafilatura option)
    favor_precision: bool = False                 # trafilatura: less boilerplate at the cost of some text
    fast: bool = False                # trafilatura without its fallback extractors: -29% CPU, ~4% of pages lose text
                                      # (206 corpus pages: 194 texts unchanged, 8 cut to a fraction; docs/scaling.md)
    max_worker_memory_mb: int = 1024  # address space a worker may add to its start-up size (RLIMIT_AS; needs a
                                      # timeout, i.e. workers); over it: extract_memory/extract_crashed. 0: no cap

    def __post_init__(self):
        if self.timeout is not None and self.timeout < 0:
            raise ValueError("timeout must be >= 0 seconds (0 or none: no bound)")
        if self.max_worker_memory_mb < 0:
            raise ValueError("max_worker_memory_mb must be >= 0 (0: no cap)")
        if self.processes < 0 or self.batch_size < 1 or self.min_chars < 0 or self.language_chars < 1:
            raise ValueError("processes and min_chars must be >= 0, batch_size and language_chars >= 1")
        if not 0.0 <= self.min_language_score <= 1.0:
            raise ValueError("min_language_score must be between 0 and 1")
        if self.language_identifier not in IDENTIFIERS:
            raise ValueError(f"language_identifier must be one of {', '.join(IDENTIFIERS)}, not {self.language_identifier!r}")
        known = PY3LANGID_LANGUAGES if self.language_identifier == "py3langid" else cld2_languages()
        if self.language and self.language not in known:   # "english" would drop every page as not_english
            raise ValueError(f"language must be an ISO 639 code that {self.language_identifier} knows, such as \"en\" "
                             f"or \"de\" (\"\" keeps every language), not {self.language!r}")


def extract_text(html: Union[bytes, str], url: str = "", include_tables: bool = False,
                 favor_precision: bool = False, fast: bool = False) -> Optional[str]:
    """Main text of a page with trafilatura's deterministic settings, or None. `fast`: trafilatura's own
    extractor alone, without comparing its result with readability's and jusText's."""
    import trafilatura
    return trafilatura.extract(html, url=url or None, output_format="txt", include_comments=False,
                               include_tables=include_tables, include_images=False, include_links=False,
                               deduplicate=False, favor_precision=favor_precision, with_metadata=False, fast=fast)


def decode_body(page: Page) -> Union[str, bytes]:
    """Text of the body if the charset is known (never raises), else the bytes for trafilatura to sniff."""
    if page.encoding:
        try:
            return page.body.decode(page.encoding, errors="replace")
        except LookupError:   # unknown charset name from a header
            pass
    return page.body


class ExtractTimeout(BaseException):
    """The page's time is up. A BaseException, because trafilatura catches Exception in places and would
    otherwise swallow the alarm and return a partial text that depends on CPU speed."""


def document_from_page(page: Page, cfg: ExtractConfig,
                       rules: LinkRules = LinkRules()) -> Union[Document, Tuple[str, str]]:
    """The Document of a fetched page, or (drop reason, detail). `rules` says which hosts are Wikipedia."""
    if is_wikipedia(page.final_url, rules) or is_wikipedia(page.link.url, rules):
        return "wikipedia", page.final_url
    try:
        text = extract_text(decode_body(page), page.final_url, cfg.include_tables, cfg.favor_precision, cfg.fast)
    except ExtractTimeout:
        raise   # reported by the caller that set the alarm
    except Exception as e:  # lxml/trafilatura raise many kinds on broken markup: drop the page, keep going
        return "extract_error", f"{type(e).__name__}: {e}"
    text = (text or "").strip()
    if not text:
        return "no_main_text", ""
    if len(text) < cfg.min_chars:
        return "too_short", f"{len(text)} chars"
    if cfg.language:
        lang, score = identify_language(text, cfg.language_chars, cfg.language_identifier)
        if lang != cfg.language or score < cfg.min_language_score:
            return ("not_english" if cfg.language == "en" else "wrong_language"), f"{lang} {score:.2f}"
    link = page.link
    return Document(doc_id=doc_id_for(link.url), url=link.url, text=text, karma=link.karma,
                    subreddits=link.subreddits, created_utc=link.created_utc)
