"""The extraction process pool: pages in batches to worker processes, each page under a wall-clock alarm.

Extraction is most of the CPU cost of the whole pipeline and can run unbounded on pathological HTML. The pool uses
every core a Beam worker has; each page runs under SIGALRM (`extract.timeout`); a worker stuck where the alarm
cannot reach it (inside C code) is killed from outside after a grace period and the pool is replaced.
This module is also what the workers import first: a handler goes on the root logger before Beam is imported
there (Beam logs a warning about optional GCP clients at import time, once per worker otherwise).
"""
import logging

logging.getLogger().addHandler(logging.NullHandler())

import concurrent.futures as cf  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
from typing import List  # noqa: E402

from core.records import Page  # noqa: E402
from crawl.links import LinkRules  # noqa: E402
from crawl.text.extract import ExtractConfig, ExtractTimeout, document_from_page, extract_text, identify_language  # noqa: E402


# ------------------------------------------------------------------------------ worker side (in the processes)
def _on_alarm(signum, frame):
    raise ExtractTimeout()


def document_with_alarm(page: Page, cfg: ExtractConfig, rules: LinkRules):
    """Runs in the worker's main thread, where SIGALRM can interrupt a runaway extraction."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, cfg.timeout)
    try:
        return document_from_page(page, cfg, rules)
    except ExtractTimeout:   # fired outside trafilatura (e.g. during language ID)
        return "extract_timeout", f"> {cfg.timeout} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _ignore_interrupts():
    # Ctrl-C reaches every process of the terminal's group: the parent handles it (webtext.py) and ends these.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def warm_up(cfg: ExtractConfig) -> bool:
    """First-use costs (lxml/trafilatura caches, the language model) paid once per worker, off the clock."""
    extract_text("<html><body><article><p>warm up</p></article></body></html>")
    if cfg.language:
        identify_language("warm up")
    return True


# ------------------------------------------------------------------------------ parent side
def _pool_context():
    # forkserver: workers fork from a clean single-threaded server that imported trafilatura once (cheap
    # replacements, safe beside Beam's threads). Like spawn, it imports the caller's __main__ module in the
    # server: a script that starts a run needs the usual `if __name__ == "__main__":` guard (see ExtractPool).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["crawl.text.pool", "trafilatura", "py3langid.langid"])
    return ctx


class ExtractPool:
    """Extracts batches of pages on `processes` worker processes, each page under cfg.timeout; `rules` says which
    hosts are Wikipedia (the same rules as the link stage)."""

    GRACE = 10.0   # seconds past the alarm before a worker counts as wedged and the pool is replaced

    def __init__(self, cfg: ExtractConfig, processes: int, rules: LinkRules = LinkRules()):
        self.cfg, self.rules, self.processes = cfg, rules, max(1, processes)
        self._pool, self._starting = None, None

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
        pool = cf.ProcessPoolExecutor(self.processes, mp_context=_pool_context(), initializer=_ignore_interrupts)
        warm = [pool.submit(warm_up, self.cfg) for _ in range(self.processes)]
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
            return [document_from_page(p, self.cfg, self.rules) for p in pages]
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._pool is None:
            self._start()

        def submit_all():
            return [self._pool.submit(document_with_alarm, p, self.cfg, self.rules) for p in pages]
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
