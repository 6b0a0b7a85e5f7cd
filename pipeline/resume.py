"""Resume any run: a link whose page an earlier run of the same job already decided is not fetched or extracted again.

WritePayloads and KeepDrops (pipeline/per_document.py) put every page's outcome on disk within `run.commit_seconds`
of its extraction, in the run's payload directory: a kept document's tokens, signature and fingerprint in a payload
file, a dropped page's Drop in a `.drops` file, each whole or not at all. The directory is the job's (a rerun of
another job needs --overwrite, which removes that job's payload files: pipeline/outdir.py), and a drops file also
names the key of the settings that decided it (`job_key`). A rerun joins its links with those outcomes by doc_id:
  - a link with a kept document: its slim Document is rebuilt from the link (url, karma, subreddits, created_utc)
    and the payload file (fingerprint, signature, reference): the Document WritePayloads sent on the first time;
  - a link with a dropped page: the same Drop (stage, reason, url, detail) again;
  - any other link goes on to FetchPages (and is replayed from --warc-dir where that has it).
A killed run so loses at most the outcomes not yet written: one batch per worker. Drops that depend on the machine
rather than the page (per_document.TRANSIENT: a dead worker, a timeout) are not kept, so a rerun tries them again.
Counters: a reused page counts through the stages it passed the first time (fetch, extract, quality: in, then out
or drop.<reason>) and as `<stage>.reused` at each, so stats.json adds up and equals an uninterrupted run's.
"""
from __future__ import annotations

import hashlib
import json
import sys
from typing import List

import apache_beam as beam

from core import files, payloads
from core.records import DROPPED, EXTRACT, FETCH, QUALITY, Document, Drop, Step, counter, doc_id_for
from pipeline.outdir import job_of

# The config sections that decide what a link becomes (its page, document or drop); not `run`, `shards`, `reddit`.
OUTCOME_SECTIONS = ("links", "fetch", "extract", "quality", "dedup")


def job_key(cfg, warc_input: str | None = None) -> str:
    """A short key of the settings that decide a link's outcome (those of them that are part of the job, see
    pipeline/outdir.py): drops written under another key (another job's, after --overwrite) are not reused."""
    job = job_of(cfg.to_dict(), warc_input)
    decisive = {s: job.get(s) for s in (*OUTCOME_SECTIONS, "warc_input")}
    return hashlib.blake2b(json.dumps(decisive, sort_keys=True).encode(), digest_size=8).hexdigest()


def outcome_files(payload_dir: str) -> List[str]:
    """The complete payload and drops files in `payload_dir` (temporary files are hidden and never match)."""
    return (files.match(files.join(payload_dir, "*.arrow"))
            + files.match(files.join(payload_dir, "*" + payloads.DROPS_SUFFIX)))


def read_outcomes(path: str, job: str):
    """(doc_id, outcome) of one file: ("doc", fingerprint, ref) or ("drop", stage, reason, url, detail). Drops
    files of another job than `job`, format-1 payload files and unreadable files give none."""
    try:
        written_by, rows = payloads.read_outcomes(path)
    except Exception:   # not a file a webtext run wrote whole: its pages are done again
        counter(EXTRACT, "resume_unreadable_files").inc()
        return
    if path.endswith(payloads.DROPS_SUFFIX):
        if written_by != job:
            return
        for stage, reason, url, detail in rows:
            if stage in (EXTRACT, QUALITY):
                yield doc_id_for(url), ("drop", stage, reason, url, detail)
    else:
        for doc_id, fingerprint, ref in rows:
            yield doc_id, ("doc", fingerprint, str(ref))


class _Reuse(Step):
    """(doc_id, {"link": [Link], "prior": [outcome]}) -> the link to fetch (main output), or its reused Document
    ("documents") or Drop ("dropped"), counted as the stages it passed counted it the first time."""
    stage = FETCH

    def __init__(self, payload_dir: str):
        super().__init__()
        self.payload_dir = payload_dir

    def start_bundle(self):
        self.reader = payloads.Reader(self.payload_dir)

    def finish_bundle(self):
        self.reader.close()

    def _passed(self, *stages: str) -> None:
        for stage in stages:
            self.count("in", stage=stage)
            self.count("reused", stage=stage)
            self.count("out", stage=stage)

    def process(self, kv):
        _, grouped = kv
        prior = min(grouped["prior"], default=None)   # a kept document first ("doc" < "drop"), then any one
        for link in grouped["link"]:
            if prior is None:
                yield link
            elif prior[0] == "doc":
                _, fingerprint, ref = prior
                self._passed(FETCH, EXTRACT, QUALITY)
                yield beam.pvalue.TaggedOutput("documents", Document(
                    doc_id_for(link.url), link.url, "", link.karma, link.subreddits, link.created_utc,
                    fingerprint=fingerprint, sig=self.reader.sig(ref), payload=ref))
            else:
                _, stage, reason, url, detail = prior
                self._passed(FETCH, *([EXTRACT] if stage == QUALITY else []))
                self.count("in", stage=stage)
                self.count("reused", stage=stage)
                yield from self.emit(Drop(stage, reason, url, detail))


def _say_resuming(n_links: int, kept: int, dropped: int, payload_dir: str) -> None:
    if kept + dropped:
        print(f"resuming: {kept + dropped:,} of {n_links:,} pages already extracted ({kept:,} kept, {dropped:,} "
              f"dropped; outcomes in {payload_dir}); {n_links - kept - dropped:,} to fetch",
              file=sys.stderr, flush=True)


class Resume(beam.PTransform):
    """Links -> {"links": Link (to fetch), "documents": Document (reused, slim as WritePayloads sends them),
    "dropped": Drop (reused)}, from the outcome files in `payload_dir` written under `job` (job_key)."""

    def __init__(self, payload_dir: str, job: str, quiet: bool = False):
        super().__init__()
        self.payload_dir, self.job, self.quiet = payload_dir, job, quiet

    def expand(self, links):
        prior = (links.pipeline
                 | "OutcomeFiles" >> beam.Create(outcome_files(self.payload_dir))
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "ReadOutcomes" >> beam.FlatMap(read_outcomes, self.job))
        split = ({"link": links | "ByDocId" >> beam.Map(lambda l: (doc_id_for(l.url), l)), "prior": prior}
                 | "JoinOutcomes" >> beam.CoGroupByKey()
                 | "Reuse" >> beam.ParDo(_Reuse(self.payload_dir)).with_outputs("documents", DROPPED, main="links"))
        if not self.quiet:   # counts only: nothing waits for these but the line itself
            count = beam.combiners.Count.Globally
            _ = (links | "CountLinks" >> count()
                 | "SayResuming" >> beam.Map(
                     _say_resuming, beam.pvalue.AsSingleton(split.documents | "CountKept" >> count()),
                     beam.pvalue.AsSingleton(split[DROPPED] | "CountDropped" >> count()), self.payload_dir))
        return {"links": split.links, "documents": split.documents, DROPPED: split[DROPPED]}
