"""ExtractDocuments: the extract stage as one Beam transform. Pages -> {"documents": Document, "dropped": Drop}.

Pages are batched (the pool pays per batch, not per page) and handed to a process pool (crawl/text/pool.py);
each result is a Document or a (reason, detail) that the Step base counts as `extract.drop.<reason>`.
With `then` (the per-document work after extraction, pipeline/per_document.py), the workers also apply it to
every Document, and this stage counts that work's stage too (`then.stage`: in = extracted, out, drop.<reason>).
"""
from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import List

import apache_beam as beam

from core.progress import progress_bar
from core.records import DROPPED, EXTRACT, Document, Drop, Page, Step
from crawl.links import LinkRules
from crawl.text.extract import ExtractConfig
from crawl.text.pool import ExtractPool, default_processes, shared_pool


class _ExtractBatch(Step):
    """Batches go to the pool from a helper thread, one behind the other: while the workers extract batch N, the
    bundle's thread hands on batch N-1's documents (Beam's per-element work downstream), so the workers do not
    wait for it. Counting stays on the bundle's thread (Beam metrics live there)."""
    stage = EXTRACT

    def __init__(self, cfg: ExtractConfig, rules: LinkRules, quiet: bool = False, then=None):
        super().__init__()
        self.cfg, self.rules, self.quiet, self.then = cfg, rules, quiet, then

    def setup(self):
        self.pool = shared_pool(self.cfg, self.cfg.processes or default_processes(), self.rules, self.then)
        self.pool.start_in_background()
        self.feeder = ThreadPoolExecutor(1, thread_name_prefix="extract-feed")   # one batch at a time, in order
        self.bar = None

    def teardown(self):
        self.feeder.shutdown(wait=True, cancel_futures=True)   # a running batch ends within its own bounds
        self.pool.close()
        if self.bar is not None:
            self.bar.close()

    def start_bundle(self):
        self.queued = collections.deque()   # (pages, future of (results, worker restarts)) in submission order

    def _map(self, pages):
        restarts = self.pool.restarts
        results = self.pool.map(pages)
        return results, self.pool.restarts - restarts

    def _wait(self):
        """The oldest queued batch's outputs. The pool bounds each page (timeout + grace); so does this wait."""
        pages, future = self.queued.popleft()
        results, restarts = future.result(timeout=len(pages) * (self.cfg.timeout + ExtractPool.GRACE) + 60)
        if restarts:   # dead or wedged workers replaced (their pages: extract_crashed/timeout)
            self.count("worker_restarts", restarts)
        self.bar.update(len(pages))
        later = self.then.stage if self.then is not None else ""
        for page, result in zip(pages, results):
            if isinstance(result, tuple) and not isinstance(result, (Document, Drop)):   # (reason, detail)
                result = self.drop(result[0], page.link.url, result[1])
            elif later:   # extracted, then handed to the next stage's work in the worker
                self.count("out")
                self.count("in", stage=later)
                if isinstance(result, Document):
                    self.count("out", stage=later)
                    yield result
                    continue
            yield from self.emit(result)

    def process(self, pages: List[Page]):
        if self.bar is None:
            self.bar = progress_bar("extract", unit="page", quiet=self.quiet)
        self.count("in", len(pages))
        self.queued.append((pages, self.feeder.submit(self._map, pages)))
        while len(self.queued) > 1:   # the batch before this one: done or nearly, while this one runs
            yield from self._wait()

    def finish_bundle(self):
        while self.queued:
            yield from self.windowed(self._wait())


class ExtractDocuments(beam.PTransform):
    """Pages -> Documents (tagged outputs: `documents`, `dropped`)."""

    def __init__(self, cfg: ExtractConfig = ExtractConfig(), rules: LinkRules = LinkRules(), quiet: bool = False,
                 then=None):
        super().__init__()
        self.cfg, self.rules, self.quiet, self.then = cfg, rules, quiet, then

    def expand(self, pages):
        out = (pages
               | "Batch" >> beam.BatchElements(min_batch_size=self.cfg.batch_size, max_batch_size=self.cfg.batch_size)
               | "Extract" >> beam.ParDo(_ExtractBatch(self.cfg, self.rules, self.quiet, self.then)).with_outputs(DROPPED, main="documents"))
        return {"documents": out.documents, DROPPED: out[DROPPED]}
