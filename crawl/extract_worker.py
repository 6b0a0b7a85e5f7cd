"""The worker side of the extraction pool (crawl/extract.py): what runs inside the pool's processes.

Imported first in every worker, so a handler is on the root logger before Beam is imported there: Beam logs a
warning about optional GCP clients at import time, which would otherwise reach the user's terminal once per worker.
"""
import logging
import signal

logging.getLogger().addHandler(logging.NullHandler())

from crawl.extract import ExtractConfig, ExtractTimeout, document_from_page, extract_text, identify_language  # noqa: E402
from crawl.records import Page  # noqa: E402


def _on_alarm(signum, frame):
    raise ExtractTimeout()


def document_with_alarm(page: Page, cfg: ExtractConfig):
    """Runs in the worker's main thread, where SIGALRM can interrupt a runaway extraction."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, cfg.timeout)
    try:
        return document_from_page(page, cfg)
    except ExtractTimeout:   # fired outside trafilatura (e.g. during language ID)
        return "extract_timeout", f"> {cfg.timeout} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def warm_up(cfg: ExtractConfig) -> bool:
    """First-use costs (lxml/trafilatura caches, the language model) paid once per worker, off the clock."""
    extract_text("<html><body><article><p>warm up</p></article></body></html>")
    if cfg.language:
        identify_language("warm up")
    return True
