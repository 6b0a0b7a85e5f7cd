"""ExtractDocuments: the extract stage as one Beam transform. Pages -> {"documents": Document, "dropped": Drop}.

Pages are batched (the pool pays per batch, not per page) and handed to a process pool (crawl/text/pool.py);
each result is a Document or a (reason, detail) that the Step base counts as `extract.drop.<reason>`.
With `then` (the per-document work after extraction, pipeline/per_document.py), the workers also apply it to
every Document, and this stage counts that work's stage too (`then.stage`: in = extracted, out, drop.<reason>).
"""
from __future__ import annotations

from typing import List

import apache_beam as beam

from core.progress import progress_bar
from core.records import DROPPED, EXTRACT, Document, Drop, Page, Step
from crawl.links import LinkRules
from crawl.text.extract import ExtractConfig
from crawl.text.pool import default_processes, shared_pool


class _ExtractBatch(Step):
    stage = EXTRACT

    def __init__(self, cfg: ExtractConfig, rules: LinkRules, quiet: bool = False, then=None):
        super().__init__()
        self.cfg, self.rules, self.quiet, self.then = cfg, rules, quiet, then

    def setup(self):
        self.pool = shared_pool(self.cfg, self.cfg.processes or default_processes(), self.rules, self.then)
        self.pool.start_in_background()
        self.bar = None

    def teardown(self):
        self.pool.close()
        if self.bar is not None:
            self.bar.close()

    def process(self, pages: List[Page]):
        if self.bar is None:
            self.bar = progress_bar("extract", unit="page", quiet=self.quiet)
        self.count("in", len(pages))
        restarts = self.pool.restarts
        results = self.pool.map(pages)
        if self.pool.restarts > restarts:   # dead or wedged workers replaced (their pages: extract_crashed/timeout)
            self.count("worker_restarts", self.pool.restarts - restarts)
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
