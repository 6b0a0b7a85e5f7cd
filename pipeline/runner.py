"""Run the pipeline and account for it: stats.json + the stats folded into manifest.json, and a table."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, StandardOptions, TestOptions,
                                                  WorkerOptions)

from crawl.text.pool import default_processes
from pipeline import crosscheck
from pipeline.build import build
from pipeline.card import write_card
from core.settings import UsageError
from pipeline.config import Config
from pipeline.shards.format import add_stats_to_manifest
from core.records import EXTRACT, SHARDS, STAGES
from pipeline.stats import counters_from_result, format_table, stage_stats, unbalanced, write_stats


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


def check_inputs(cfg: Config) -> int:
    """Fail early on a pattern that matches nothing; the total size of the inputs in bytes."""
    total = 0
    for pattern in cfg.run.inputs:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception:   # Beam raises BeamIOError for unreadable locations
            matched = []
        if not matched:
            raise UsageError(f"no input file matches {pattern!r}; check the path given to --input")
        total += sum(m.size_in_bytes for m in matched)
    return total


def resolve_processes(cfg: Config, options: PipelineOptions) -> Config:
    """extract.processes = 0 means: on the local runner, the cores shared among its workers; elsewhere 1, since
    Dataflow/Spark already run one SDK process per core."""
    if cfg.extract.processes:
        return cfg
    runner = str(options.view_as(StandardOptions).runner or "")
    if runner.rsplit(".", 1)[-1] in ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "PrismRunner"):
        workers = options.view_as(DirectOptions).direct_num_workers or 1
        workers = default_processes() if workers <= 0 else workers
        processes = max(1, default_processes() // workers)
    else:
        processes = 1
    return dataclasses.replace(cfg, extract=dataclasses.replace(cfg.extract, processes=processes))


def run(cfg: Config, out_dir: str, options: PipelineOptions, warc_input: Optional[str] = None,
        echo=print) -> dict:
    """Build and run the pipeline to completion; returns {"stages": ..., "seconds": ...}."""
    # DataflowRunner --dry_run: build and validate the job offline; its gs:// inputs are the workers' to read
    dry_run = options.view_as(TestOptions).dry_run
    if warc_input is None and not dry_run and check_inputs(cfg) > LARGE_INPUT_BYTES and not cfg.fetch.contact:
        echo("WARNING: a large crawl without a contact: set fetch.contact (--set fetch.contact=you@example.org) "
             "so site owners can reach you; it goes into the User-Agent")
    _check_writable_dir(out_dir, "output directory")
    if cfg.fetch.warc_dir:
        _check_writable_dir(cfg.fetch.warc_dir, "WARC directory")
    cfg = resolve_processes(cfg, options)
    if cfg.run.quiet and not options.view_as(WorkerOptions).default_sdk_harness_log_level:
        options.view_as(WorkerOptions).default_sdk_harness_log_level = "ERROR"   # worker processes log too
    logging.getLogger("apache_beam").setLevel(logging.ERROR)   # Beam's INFO chatter hides the progress bars
    start = time.time()
    try:
        p = beam.Pipeline(options=options)
    except ValueError as e:   # an unknown --runner, or e.g. DataflowRunner without --project/--temp_location
        raise UsageError(" ".join(line.strip() for line in str(e).splitlines() if line.strip())) from None
    build(p, cfg, out_dir, warc_input=warc_input)
    result = p.run()
    result.wait_until_finish()
    seconds = time.time() - start
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
    extra = {"seconds": round(seconds, 2), "unbalanced": unbalanced(stats), "from_data": data,
             "metrics_vs_data": checked}
    write_stats(FileSystems.join(out_dir, "stats.json"), stats, extra)
    add_stats_to_manifest(out_dir, {"stages": stats, **extra})
    write_card(out_dir, {"stages": stats, **extra})
    echo(format_table(stats))
    for line in extra["unbalanced"] + checked:
        echo(f"WARNING: {line}")
    if not stats.get(SHARDS, {}).get("out"):
        echo("WARNING: no document reached the shards; the drop reasons above say where everything went")
    return {"stages": stats, **extra}
