"""Run the pipeline and account for it: stats.json + the stats folded into manifest.json, and a table.

A run that produced nothing, or whose fetches nearly all failed for network reasons (a dead proxy, no network),
is a RunFailed (exit 1) naming the top drop reasons, after its stats are written: never "done, next: train".
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import re
import time
from pathlib import Path
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, StandardOptions, TestOptions,
                                                  WorkerOptions)

from core import forkserver
from core.memory import arrow_frees_too, release_freed, return_large_frees
from core.records import EXTRACT, FETCH, SHARDS, STAGES
from core.settings import UsageError
from core import files
from core.shard_format import add_stats_to_manifest, read_manifest
from crawl.fetch.procs import default_fetch_processes
from crawl.text.pool import default_processes
from pipeline import corpus, crosscheck, outdir
from pipeline.build import build
from pipeline.card import write_card
from pipeline.config import Config
from pipeline.per_document import DocumentWork
from pipeline.stats import counters_from_result, format_table, stage_stats, stage_times, unbalanced, write_stats


def _check_writable_dir(path: str, what: str) -> None:
    if "://" in path:   # gs://, s3://, ...: the runner's filesystem checks it
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {path} is a file; give a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {what} {path} ({e.strerror}); give a writable directory") from None


LARGE_INPUT_BYTES = 100 * 2**20   # about a month of 2010 Pushshift submissions: a crawl site owners will notice
# Fetch outcomes that mean "the network did not answer"; most links ending so means the crawl did not happen.
NETWORK_FAILURES = ("connection_error", "dns_error", "tls_error", "timeout", "host_unreachable", "robots_unreachable")
MOSTLY_FAILED = 0.9    # share of fetched links
MIN_LINKS = 10         # a handful of dead links is not a dead network


class RunFailed(Exception):
    """The run finished but its output is empty or untrustworthy (exit 1; the message is one line)."""


def _scheme_hint(pattern: str, error: Exception) -> str:
    """Beam's own words, which name the missing extra (pip install apache-beam[gcp]) where one is missing."""
    return " ".join(str(error).split())[:300]


def check_inputs(cfg: Config) -> int:
    """Fail early on an input that is a directory or matches nothing; the total size of the inputs in bytes."""
    total = 0
    for pattern in cfg.run.inputs:
        local = pattern.removeprefix("file://") if "://" not in pattern or pattern.startswith("file://") else None
        if local is not None and Path(local).is_dir():
            raise UsageError(f"--input {pattern} is a directory; give files or a glob, e.g. {local.rstrip('/')}/RS_*.zst")
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as e:   # Beam raises BeamIOError (or ValueError: no filesystem for a scheme)
            if local is None:
                raise UsageError(f"cannot list --input {pattern}: {_scheme_hint(pattern, e)}") from None
            matched = []
        if not matched:
            raise UsageError(f"no input file matches {pattern!r}; check the path given to --input")
        for path in [pattern] + [m.path for m in matched]:   # Beam passes paths as UTF-8 strings between stages
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:   # the file system's undecodable bytes, as surrogate escapes
                raise UsageError(f"input path {ascii(path)} is not valid UTF-8; rename the file") from None
        total += sum(m.size_in_bytes for m in matched)
    return total


def resolve_processes(cfg: Config, options: PipelineOptions) -> Config:
    """extract.processes = 0 means: on the local runner, the cores shared among its workers; elsewhere 1, since
    Dataflow/Spark already run one SDK process per core. fetch.processes = -1 means: one fetch process where one
    process would otherwise run every bundle and every fetch thread under one GIL (the local runner's default
    single worker, with 2+ cores), else none. Prism runs bundles in parallel, each its own fetch."""
    runner = str(options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]
    local = runner in ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "PrismRunner")
    workers = options.view_as(DirectOptions).direct_num_workers or 1
    workers = default_processes() if workers <= 0 else workers
    extract, fetch = cfg.extract, cfg.fetch
    if not extract.processes:
        extract = dataclasses.replace(extract, processes=max(1, default_processes() // workers) if local else 1)
    if fetch.processes < 0:
        one_worker = local and runner != "PrismRunner" and workers == 1
        fetch = dataclasses.replace(fetch, processes=default_fetch_processes(default_processes()) if one_worker else 0)
    return dataclasses.replace(cfg, extract=extract, fetch=fetch)


def start_worker_server(cfg: Config, options: PipelineOptions) -> bool:
    """Where this process runs the bundles (the local runner, in memory) and so forks the extraction workers and
    the fetch process, start their forkserver now: its imports (~2 s) then run on another core while this process
    builds the job and reads the dump, instead of after it, when the first worker is wanted. True if started."""
    runner = str(options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]
    in_process = (runner in ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner")
                  and options.view_as(DirectOptions).direct_running_mode == "in_memory")
    if not in_process or cfg.run.stop_after == "links" or options.view_as(TestOptions).dry_run:
        return False
    forkserver.preload(DocumentWork.__module__, "datasketch")   # what the pool adds for its per-document work
    forkserver.start()
    return True


# Errors raised inside a worker that mean "fix your setup", not "a bug": shown as their one line.
WORKER_USAGE_ERRORS = re.compile(r"\b(?:RedditCredentialsError|UsageError|TokenizerUnavailable): ([^\n]+)")


def _user_error_in(text: str) -> Optional[str]:
    found = WORKER_USAGE_ERRORS.findall(text)
    return found[-1].split(" [while running")[0].strip() if found else None


def failure(stats: dict, warc_input: Optional[str] = None, addition: bool = False) -> Optional[str]:
    """Why a finished run's output cannot be used (one line), or None. An addition may add no document (every
    link already in the corpus, every page a duplicate of it): that is a result, not a failure."""
    def top(stage: str, n: int = 3) -> str:
        dropped = stats.get(stage, {}).get("dropped", {})
        return ", ".join(f"{reason} {count:,}" for reason, count in list(dropped.items())[:n]) or "none"

    fetch = stats.get(FETCH, {})
    failed = sum(fetch.get("dropped", {}).get(r, 0) for r in NETWORK_FAILURES)
    if fetch.get("in", 0) >= MIN_LINKS and failed >= MOSTLY_FAILED * fetch["in"]:
        return (f"{failed:,} of {fetch['in']:,} fetches failed on the network ({top(FETCH)}): check the network "
                "connection and --http-proxy")
    if not stats.get(SHARDS, {}).get("out") and not addition:
        where = next((s for s in reversed(list(stats)) if stats[s].get("in")), None)
        if where is None:
            source = f"no usable page in the WARCs under {warc_input}" if warc_input else "no input record"
            return f"no document reached the shards: {source}"
        return f"no document reached the shards; the last stage with input was {where} ({top(where)})"
    return None


def run(cfg: Config, out_dir: str, options: PipelineOptions, warc_input: Optional[str] = None,
        echo=print, overwrite: bool = False, add_to: Optional[str] = None) -> dict:
    """Build and run the pipeline to completion; returns {"stages": ..., "seconds": ...}. Raises UsageError
    before anything runs, RunFailed after a run whose output is empty or whose fetches nearly all failed.
    `add_to`: grow that corpus by a generation instead of writing `out_dir` (pipeline/corpus.py)."""
    # DataflowRunner --dry_run: build and validate the job offline; its gs:// inputs are the workers' to read
    dry_run = options.view_as(TestOptions).dry_run
    if warc_input is None and not dry_run and check_inputs(cfg) > LARGE_INPUT_BYTES and not cfg.fetch.contact:
        echo("WARNING: a large crawl without a contact: set fetch.contact (--set fetch.contact=you@example.org) "
             "so site owners can reach you; it goes into the User-Agent")
    addition, job = None, outdir.job_of(cfg.to_dict(), warc_input)
    if add_to:
        try:
            addition = corpus.prepare(add_to, cfg, job, overwrite, echo)
        except corpus.AlreadyAdded as e:
            echo(str(e))
            return {"stages": {}, "seconds": 0.0, "unbalanced": [], "already_added": True}
        out_dir = addition.run_dir
    else:
        _check_writable_dir(out_dir, "output directory")
        outdir.claim(out_dir, job, overwrite)   # before a --warc-dir inside it
    if cfg.fetch.warc_dir:
        _check_writable_dir(cfg.fetch.warc_dir, "WARC directory")
    cfg = resolve_processes(cfg, options)
    start_worker_server(cfg, options)
    if cfg.run.quiet and not options.view_as(WorkerOptions).default_sdk_harness_log_level:
        options.view_as(WorkerOptions).default_sdk_harness_log_level = "ERROR"   # worker processes log too
    logging.getLogger("apache_beam").setLevel(logging.ERROR)   # Beam's INFO chatter hides the progress bars
    return_large_frees()   # the local runner's process: freed page bodies go back to the system (core/memory.py)
    arrow_frees_too()      # and the shard writer's Arrow buffers
    start = time.time()
    try:
        p = beam.Pipeline(options=options)
    except ValueError as e:   # an unknown --runner, or e.g. DataflowRunner without --project/--temp_location
        raise UsageError(" ".join(line.strip() for line in str(e).splitlines() if line.strip())) from None
    build(p, cfg, out_dir, warc_input=warc_input, addition=addition)
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as e:   # a setup problem found on a worker arrives wrapped in Beam's traceback text
        why = _user_error_in(str(e))
        if why is None:
            raise
        raise UsageError(why) from None
    seconds = time.time() - start
    gc.collect()
    release_freed()   # what the local runner held for its stages, back to the system before the index and the card
    if dry_run:   # nothing ran, so nothing to count; the job is the result
        echo(f"dry run: job {result.job.proto.name} built and validated in {seconds:.1f} s, not submitted")
        return {"stages": {}, "seconds": round(seconds, 2), "unbalanced": [], "job": result.job}

    ran = STAGES[STAGES.index(EXTRACT):] if warc_input else STAGES
    counters = counters_from_result(result)
    stats = stage_stats(counters, ran)
    data = crosscheck.from_data(out_dir)   # exact on every runner: see pipeline/crosscheck.py
    checked = (crosscheck.disagreements(stats, data) if counters else
               ["the runner returned no metrics: the table is empty; stats.json's from_data has the drops "
                "and the kept documents"])
    extra = {"seconds": round(seconds, 2), "stage_seconds": stage_times(result, start),
             "unbalanced": unbalanced(stats), "from_data": data, "metrics_vs_data": checked}
    shards_written = not cfg.run.stop_after and FileSystems.exists(FileSystems.join(out_dir, "manifest.json"))
    if shards_written and files.is_local(out_dir):
        # the URL and sketch index of this generation: what a later --add-to and `shards dedup-against` use
        corpus.index_generation(out_dir, addition.corpus if addition else out_dir,
                                addition.generation if addition else 0, cfg.dedup)
    write_stats(FileSystems.join(out_dir, "stats.json"), stats, extra)
    add_stats_to_manifest(out_dir, {"stages": stats, **extra})
    if addition is not None and shards_written:
        corpus.commit(addition, job, {"stages": stats, **extra})
        echo(f"added generation {addition.generation} to {addition.corpus}")
        write_card(addition.corpus, read_manifest(addition.corpus).get("stats") or {})
    else:
        write_card(out_dir, {"stages": stats, **extra})
    outdir.release(out_dir)
    echo(format_table(stats, extra["stage_seconds"], seconds))
    for line in extra["unbalanced"] + checked:
        echo(f"WARNING: {line}")
    why = None if cfg.run.stop_after else failure(stats, warc_input, addition is not None)   # links-only: no shards
    if why:
        raise RunFailed(why)
    return {"stages": stats, **extra}
