"""Pages -> Documents: main text with trafilatura, then the cheap document rules (length, English, Wikipedia).

trafilatura's settings are fixed for determinism (`deduplicate=False`: its LRU-based dedup depends on call order;
we dedup ourselves). trafilatura can run unbounded on pathological HTML, so by default each page is extracted in
a helper process with a wall-clock limit: a page over the limit is dropped as `extract_timeout` and the helper is
replaced, instead of one page holding a worker.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import apache_beam as beam

from crawl.links import is_wikipedia
from crawl.records import Document, Drop, Page, doc_id_for
from crawl.steps import DROPPED, Step


@dataclass(frozen=True)
class ExtractConfig:
    timeout: Optional[float] = 20.0   # seconds per page; None/0 extracts in-process with no bound
    min_chars: int = 200              # cheap early cut before language ID; the word-level rules are in quality
    language: str = "en"              # GPT-2 removed non-English pages
    min_language_score: float = 0.65  # py3langid normalized probability of `language`
    language_chars: int = 10_000      # identify on the first N chars (plenty, and bounded)
    include_tables: bool = False
    favor_precision: bool = False


TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def extract_text(html: Union[bytes, str], url: str = "", include_tables: bool = False,
                 favor_precision: bool = False) -> Optional[str]:
    """Main text of a page with trafilatura's deterministic settings, or None."""
    import trafilatura
    return trafilatura.extract(html, url=url or None, output_format="txt", include_comments=False,
                               include_tables=include_tables, include_images=False, include_links=False,
                               deduplicate=False, favor_precision=favor_precision, with_metadata=False)


def decode_body(page: Page) -> Union[str, bytes]:
    """Text of the body if the charset is known (never raises), else the bytes for trafilatura to sniff."""
    if page.encoding:
        try:
            return page.body.decode(page.encoding, errors="replace")
        except LookupError:   # unknown charset name from a header
            pass
    return page.body


def page_title(body: bytes) -> str:
    m = TITLE_RE.search(body[:65536])
    return re.sub(r"\s+", " ", m.group(1).decode("utf-8", "replace")).strip()[:300] if m else ""


_IDENTIFIER = None


def identify_language(text: str, chars: int = 10_000) -> Tuple[str, float]:
    """(language code, probability) from py3langid, whose model ships in its wheel (offline)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        import py3langid.langid as langid
        _IDENTIFIER = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)
    lang, score = _IDENTIFIER.classify(text[:chars])
    return lang, float(score)


class ExtractTimeout(Exception):
    pass


def _context():
    # forkserver: children fork from a clean single-threaded server that has imported trafilatura once (cheap
    # restarts, safe beside Beam's threads), and unlike spawn it does not re-run the caller's __main__.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["crawl.extract", "trafilatura"])
    return ctx


class BoundedExtractor:
    """Runs extract_text in one helper process so a pathological page can be abandoned after `timeout` s."""

    def __init__(self, timeout: Optional[float], **options):
        self.timeout, self.options, self._pool = timeout, options, None

    def __call__(self, html, url: str = "") -> Optional[str]:
        if not self.timeout:
            return extract_text(html, url, **self.options)
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(1, mp_context=_context())
        future = self._pool.submit(extract_text, html, url, **self.options)
        try:
            return future.result(timeout=self.timeout)
        except cf.TimeoutError:
            self.close()
            raise ExtractTimeout() from None
        except cf.process.BrokenProcessPool:
            # The helper died (killed, out of memory, or could not start at all, e.g. a caller whose __main__
            # cannot be re-imported): extract this page in-process and keep the bound for the next one.
            self.close()
            return extract_text(html, url, **self.options)

    def close(self):
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()   # the stuck worker; shutdown alone would wait for it
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def document_from_page(page: Page, cfg: ExtractConfig, extractor=None) -> Union[Document, str]:
    """The Document of a fetched page, or the reason it is dropped."""
    if is_wikipedia(page.final_url) or is_wikipedia(page.link.url):
        return "wikipedia"
    extractor = extractor or (lambda html, url: extract_text(html, url, cfg.include_tables, cfg.favor_precision))
    try:
        text = extractor(decode_body(page), page.final_url)
    except ExtractTimeout:
        return "extract_timeout"
    except Exception:  # trafilatura/lxml raise many kinds on broken markup; the page is dropped, the run goes on
        return "extract_error"
    text = (text or "").strip()
    if not text:
        return "no_main_text"
    if len(text) < cfg.min_chars:
        return "too_short"
    if cfg.language:
        lang, score = identify_language(text, cfg.language_chars)
        if lang != cfg.language or score < cfg.min_language_score:
            return "not_english" if cfg.language == "en" else "wrong_language"
    else:
        lang, score = "", 0.0
    link = page.link
    return Document(doc_id=doc_id_for(link.url), url=link.url, text=text, title=page_title(page.body),
                    karma=link.karma, subreddits=link.subreddits, created_utc=link.created_utc,
                    lang=lang, lang_score=round(score, 4))


class _Extract(Step):
    stage = "extract"

    def __init__(self, cfg: ExtractConfig):
        super().__init__()
        self.cfg = cfg

    def setup(self):
        self.extractor = BoundedExtractor(self.cfg.timeout, include_tables=self.cfg.include_tables,
                                          favor_precision=self.cfg.favor_precision)

    def teardown(self):
        self.extractor.close()

    def apply(self, page: Page):
        result = document_from_page(page, self.cfg, self.extractor)
        if isinstance(result, str):
            return self.drop(result, page.link.url, page.final_url if page.final_url != page.link.url else "")
        return result


class ExtractDocuments(beam.PTransform):
    """Pages -> Documents (tagged outputs: `documents`, `dropped`)."""

    def __init__(self, cfg: ExtractConfig = ExtractConfig()):
        super().__init__()
        self.cfg = cfg

    def expand(self, pages):
        out = pages | "Extract" >> beam.ParDo(_Extract(self.cfg)).with_outputs(DROPPED, main="documents")
        return {"documents": out.documents, DROPPED: out[DROPPED]}
