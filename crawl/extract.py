"""Pages -> Documents: main text with trafilatura, then the cheap document rules (Wikipedia, length, English).

trafilatura's settings are fixed for determinism (`deduplicate=False`: its LRU-based dedup depends on call order;
we dedup ourselves). Extraction is most of the CPU cost of the whole pipeline and can run unbounded on
pathological HTML, so pages go in batches to a pool of worker processes: the pool uses every core a Beam worker
has, and each page runs under a wall-clock alarm (`extract_timeout`). A worker stuck where the alarm cannot
reach it (inside C code) is killed from outside after a grace period and the pool is replaced.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import apache_beam as beam

from crawl.links import is_wikipedia
from crawl.records import Document, Page, doc_id_for
from crawl.steps import DROPPED, Step


@dataclass(frozen=True)
class ExtractConfig:
    timeout: Optional[float] = 20.0   # seconds per page; None/0: extract in the calling thread with no bound
    processes: int = 0                # extraction processes per Beam worker; 0: decided by runner.py
    batch_size: int = 64              # pages handed to the pool at once
    min_chars: int = 200              # cheap early cut before language ID; the word-level rules are in quality
    language: str = "en"              # GPT-2 removed non-English pages; "" keeps every language
    min_language_score: float = 0.65  # py3langid normalized probability of `language`
    language_chars: int = 3_000       # identify on the first N chars: same verdicts as 10k on the test pages
    include_tables: bool = False
    favor_precision: bool = False

    def __post_init__(self):
        if self.timeout is not None and self.timeout < 0:
            raise ValueError("timeout must be >= 0 seconds (0 or none: no bound)")
        if self.processes < 0 or self.batch_size < 1 or self.min_chars < 0 or self.language_chars < 1:
            raise ValueError("processes and min_chars must be >= 0, batch_size and language_chars >= 1")
        if not 0.0 <= self.min_language_score <= 1.0:
            raise ValueError("min_language_score must be between 0 and 1")


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


class ExtractTimeout(BaseException):
    """The page's time is up. A BaseException, because trafilatura catches Exception in places and would
    otherwise swallow the alarm and return a partial text that depends on CPU speed."""


def document_from_page(page: Page, cfg: ExtractConfig) -> Union[Document, Tuple[str, str]]:
    """The Document of a fetched page, or (drop reason, detail)."""
    if is_wikipedia(page.final_url) or is_wikipedia(page.link.url):
        return "wikipedia", page.final_url
    try:
        text = extract_text(decode_body(page), page.final_url, cfg.include_tables, cfg.favor_precision)
    except ExtractTimeout:
        raise   # reported by the caller that set the alarm
    except Exception as e:  # lxml/trafilatura raise many kinds on broken markup: drop the page, keep going
        return "extract_error", f"{type(e).__name__}: {e}"
    text = (text or "").strip()
    if not text:
        return "no_main_text", ""
    if len(text) < cfg.min_chars:
        return "too_short", f"{len(text)} chars"
    lang, score = "", 0.0
    if cfg.language:
        lang, score = identify_language(text, cfg.language_chars)
        if lang != cfg.language or score < cfg.min_language_score:
            return ("not_english" if cfg.language == "en" else "wrong_language"), f"{lang} {score:.2f}"
    link = page.link
    return Document(doc_id=doc_id_for(link.url), url=link.url, text=text, title=page_title(page.body),
                    karma=link.karma, subreddits=link.subreddits, created_utc=link.created_utc,
                    lang=lang, lang_score=round(score, 4))


def _pool_context():
    # forkserver: workers fork from a clean single-threaded server that imported trafilatura once (cheap
    # replacements, safe beside Beam's threads). Like spawn, it imports the caller's __main__ module in the
    # server: a script that starts a run needs the usual `if __name__ == "__main__":` guard (see ExtractPool).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["crawl.extract_worker", "trafilatura", "py3langid.langid"])
    return ctx


class ExtractPool:
    """Extracts batches of pages on `processes` worker processes, each page under cfg.timeout."""

    GRACE = 10.0   # seconds past the alarm before a worker counts as wedged and the pool is replaced

    def __init__(self, cfg: ExtractConfig, processes: int):
        self.cfg, self.processes, self._pool, self._starting = cfg, max(1, processes), None, None

    def start_in_background(self) -> None:
        """Start the workers while earlier work (the fetch) is still running: starting costs about a second.
        A failure here is left for map(), which starts again and raises with the explanation."""
        if self.cfg.timeout and self._pool is None and self._starting is None:
            def start():
                try:
                    self._start()
                except RuntimeError:
                    pass
            self._starting = threading.Thread(target=start, daemon=True)
            self._starting.start()

    def _start(self) -> None:
        from crawl import extract_worker
        pool = cf.ProcessPoolExecutor(self.processes, mp_context=_pool_context())
        warm = [pool.submit(extract_worker.warm_up, self.cfg) for _ in range(self.processes)]
        try:
            cf.wait(warm, timeout=120)
            ok = all(f.done() and not f.exception() for f in warm)
        except cf.process.BrokenProcessPool:
            ok = False
        if not ok:
            pool.shutdown(wait=False, cancel_futures=True)
            raise RuntimeError(
                "extraction workers could not start; if you call webtext from your own script, put the call "
                "under `if __name__ == \"__main__\":` (worker processes import your main module)")
        self._pool = pool

    def map(self, pages: List[Page]) -> list:
        if not self.cfg.timeout:   # no bound asked for: extract here, no workers
            return [document_from_page(p, self.cfg) for p in pages]
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._pool is None:
            self._start()
        from crawl import extract_worker

        def submit_all():
            return [self._pool.submit(extract_worker.document_with_alarm, p, self.cfg) for p in pages]
        try:
            futures = submit_all()
        except cf.process.BrokenProcessPool:   # the pool broke between batches: one fresh start, no loop
            self.close()
            self._start()
            futures = submit_all()
        results = []
        for i, future in enumerate(futures):
            try:
                # Futures finish roughly in order, so waiting timeout+grace per result bounds a wedged worker.
                results.append(future.result(timeout=self.cfg.timeout + self.GRACE))
                continue
            except cf.TimeoutError:
                failed = ("extract_timeout", f"worker killed after {self.cfg.timeout + self.GRACE} s")
            except cf.process.BrokenProcessPool:   # a worker died (e.g. out of memory) on some page of the batch
                failed = ("extract_error", "extraction worker died")
            # This page is lost with its worker; the rest of the batch goes to a fresh pool.
            self.close()
            return results + [failed] + self.map(pages[i + 1:])
        return results

    def close(self):
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()   # a wedged worker would make shutdown wait forever
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def default_processes() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _ExtractBatch(Step):
    stage = "extract"

    def __init__(self, cfg: ExtractConfig, quiet: bool = False):
        super().__init__()
        self.cfg, self.quiet = cfg, quiet

    def setup(self):
        self.pool = ExtractPool(self.cfg, self.cfg.processes or default_processes())
        self.pool.start_in_background()
        self.bar = None

    def teardown(self):
        self.pool.close()
        if self.bar is not None:
            self.bar.close()

    def process(self, pages: List[Page]):
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(desc="extract", unit="page", disable=self.quiet, dynamic_ncols=True, mininterval=1.0)
        self.count("in", len(pages))
        results = self.pool.map(pages)
        self.bar.update(len(pages))
        for page, result in zip(pages, results):
            if not isinstance(result, Document):   # (reason, detail)
                result = self.drop(result[0], page.link.url, result[1])
            yield from self.emit(result)


class ExtractDocuments(beam.PTransform):
    """Pages -> Documents (tagged outputs: `documents`, `dropped`)."""

    def __init__(self, cfg: ExtractConfig = ExtractConfig(), quiet: bool = False):
        super().__init__()
        self.cfg, self.quiet = cfg, quiet

    def expand(self, pages):
        out = (pages
               | "Batch" >> beam.BatchElements(min_batch_size=self.cfg.batch_size, max_batch_size=self.cfg.batch_size)
               | "Extract" >> beam.ParDo(_ExtractBatch(self.cfg, self.quiet)).with_outputs(DROPPED, main="documents"))
        return {"documents": out.documents, DROPPED: out[DROPPED]}
