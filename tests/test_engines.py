"""Apache Flink, Apache Spark and Beam's Prism, for real: `webtext demo --runner FlinkRunner|SparkRunner|PrismRunner`
on a local cluster prints the local runner's planted-case summary and writes its shards byte for byte, with
balanced stats, and never runs more extraction processes than there are cores.

Flink and Spark need Java and Beam's job-server jars, Prism its binary (`make engines`, with `go`); without them
they skip with the one-line reason (`make engines` records mvn's or go's exact error). The option plumbing below
them runs everywhere."""
import contextlib
import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (FlinkRunnerOptions, PipelineOptions, PortableOptions,
                                                  PrismRunnerOptions, SparkRunnerOptions)

from pipeline import engines
from pipeline.demo import run as demo_run
from core.settings import UsageError
from pipeline.options import JOB_SERVER_TIMEOUT, parse
from test_pool import _extraction_processes

# Local clusters sized to this machine (2 cores): a larger parallelism only adds JVM threads.
ENGINE_ARGS = {
    "FlinkRunner": ["--runner=FlinkRunner", "--flink_master=[local]", "--parallelism=2"],
    "SparkRunner": ["--runner=SparkRunner", "--spark_master_url=local[2]"],
    "PrismRunner": ["--runner=PrismRunner"],          # the binary `make engines` built (engines.prepare)
}


def _demo(out: Path, beam_args):
    """`webtext demo --out OUT BEAM_ARGS`: its planted-case summary, shard digests, manifest entries and stats."""
    start, printed = time.time(), io.StringIO()
    peak, stop = [0], threading.Event()

    def sample():   # extraction workers alive in this process (LOOPBACK: the runners' harness runs here)
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _extraction_processes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with contextlib.redirect_stdout(printed):
            rc = demo_run.main(["--out", str(out), "--quiet", *beam_args])
    finally:
        stop.set()
        sampler.join(timeout=5)
    printed = printed.getvalue()
    assert rc == 0, printed
    shards = out / "shards"
    return {"summary": printed[printed.index("Planted cases"):printed.index("\nshards:")],
            "digests": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(shards.glob("data/*.arrow"))},
            "entries": json.loads((shards / "manifest.json").read_text())["shards"],
            "stats": json.loads((shards / "stats.json").read_text()), "seconds": time.time() - start,
            "extraction_processes": peak[0]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local runner's demo, run only when some engine can run (it is what they are compared with)."""
    if all(engines.unavailable(r) for r in ENGINE_ARGS):
        pytest.skip("; ".join(engines.unavailable(r) for r in ENGINE_ARGS))
    return _demo(tmp_path_factory.mktemp("fnapi"), [])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("runner", sorted(ENGINE_ARGS))
def test_demo_on_engine_matches_local_runner(runner, tmp_path, reference):
    why = engines.unavailable(runner)
    if why:
        pytest.skip(why)
    got = _demo(tmp_path / runner, ENGINE_ARGS[runner])
    print(f"{runner} demo: {got['seconds']:.1f} s, at most {got['extraction_processes']} extraction processes")
    assert 1 <= got["extraction_processes"] <= os.cpu_count()   # Prism ran 6 per core: one pool per DoFn
    assert got["summary"] == reference["summary"]
    assert got["digests"] == reference["digests"] and len(got["digests"]) >= 3
    assert got["entries"] == reference["entries"]
    stages = got["stats"]["stages"]
    assert got["stats"]["unbalanced"] == [] and stages["shards"]["out"] > 40, "no metrics from the runner?"
    assert got["stats"]["metrics_vs_data"] == []   # e.g. a retried task counted twice (Spark: attempted only)


# --- option plumbing (no Java, no jar needed) -------------------------------------------------------------

@pytest.fixture
def engines_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBTEXT_ENGINES_DIR", str(tmp_path))
    for e in engines.ENGINES.values():
        monkeypatch.delenv(e.env_var, raising=False)
    monkeypatch.setattr(engines.shutil, "which", lambda name: f"/usr/bin/{name}")
    return tmp_path


def test_flink_version_is_one_beam_publishes():
    assert engines.FLINK_VERSION in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS


def test_prepare_points_the_runner_at_the_fetched_jar(engines_dir):
    flink = engines_dir / f"beam-runners-flink-{engines.FLINK_VERSION}-job-server-{engines.beam_version()}.jar"
    spark = engines_dir / f"beam-runners-spark-3-job-server-{engines.beam_version()}.jar"
    flink.write_bytes(b"jar")
    spark.write_bytes(b"jar")
    opts = engines.prepare(PipelineOptions(["--runner=FlinkRunner", "--flink_master=[local]"]))
    assert opts.view_as(FlinkRunnerOptions).flink_job_server_jar == str(flink)
    assert opts.view_as(FlinkRunnerOptions).flink_version == engines.FLINK_VERSION
    opts = engines.prepare(PipelineOptions(["--runner=SparkRunner"]))
    assert opts.view_as(SparkRunnerOptions).spark_job_server_jar == str(spark)


def test_prepare_without_a_jar_is_one_line_naming_make_engines(engines_dir):
    (engines_dir / "UNAVAILABLE-SparkRunner.txt").write_text("G:A:V: Could not find artifact G:A:jar:V\n")
    with pytest.raises(UsageError) as e:
        engines.prepare(PipelineOptions(["--runner=SparkRunner"]))
    assert "make engines" in str(e.value) and "Could not find artifact" in str(e.value)
    assert "\n" not in str(e.value)


def test_prepare_keeps_a_users_jar_and_other_runners(engines_dir):
    opts = engines.prepare(PipelineOptions(["--runner=FlinkRunner", "--flink_job_server_jar=/opt/my.jar"]))
    assert opts.view_as(FlinkRunnerOptions).flink_job_server_jar == "/opt/my.jar"
    opts = PipelineOptions(["--runner=FnApiRunner"])
    assert engines.prepare(opts) is opts


def test_no_java_is_said(engines_dir, monkeypatch):
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    assert "Java" in engines.unavailable("FlinkRunner")


def test_fetch_is_idempotent_and_records_mvn_errors(engines_dir, monkeypatch):
    calls = []

    def fake_mvn(coords, dest):
        calls.append(coords)
        if "flink" in coords:
            (dest / "x.jar").write_bytes(b"jar")
            return None
        return "Could not find artifact " + coords

    monkeypatch.setattr(engines, "_mvn_copy", fake_mvn)
    out = engines.fetch(echo=lambda *a: None)
    assert out["FlinkRunner"] is None and engines.jar_path(engines.ENGINES["FlinkRunner"]).is_file()
    assert "Could not find artifact" in out["SparkRunner"]
    assert "Could not find artifact" in (engines_dir / "UNAVAILABLE-SparkRunner.txt").read_text()
    calls.clear()
    engines.fetch(["FlinkRunner"], echo=lambda *a: None)
    assert calls == []   # present: no mvn at all


def test_demo_refuses_an_engine_without_its_jar_before_starting_anything(engines_dir, tmp_path, capsys):
    rc = demo_run.main(["--out", str(tmp_path / "d"), "--runner", "FlinkRunner"])
    assert rc == 2 and "make engines" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# --- Prism and portable jobs (no binary needed) ------------------------------------------------------------

def test_a_portable_job_outlives_five_minutes_unless_the_user_says_otherwise():
    # Beam's default job_server_timeout (300 s) ends the job-state stream of a longer Prism/Flink/Spark job
    assert parse(["--runner=PrismRunner"])[0].view_as(PortableOptions).job_server_timeout == JOB_SERVER_TIMEOUT
    assert JOB_SERVER_TIMEOUT >= 86400
    assert parse(["--job_server_timeout=600"])[0].view_as(PortableOptions).job_server_timeout == 600
    assert parse(["--job_server_timeout", "300"])[0].view_as(PortableOptions).job_server_timeout == 300


def test_prepare_points_prism_at_the_built_binary(engines_dir):
    opts = engines.prepare(PipelineOptions(["--runner=PrismRunner"]))
    assert opts.view_as(PrismRunnerOptions).prism_location is None   # none built: Beam's own download stays
    engines.prism_path().write_bytes(b"#!/bin/sh\n")
    engines.prism_path().chmod(0o755)
    opts = engines.prepare(PipelineOptions(["--runner=PrismRunner"]))
    assert opts.view_as(PrismRunnerOptions).prism_location == str(engines_dir / "prism")
    opts = engines.prepare(PipelineOptions(["--runner=PrismRunner", "--prism_location=/opt/prism"]))
    assert opts.view_as(PrismRunnerOptions).prism_location == "/opt/prism"


def test_building_prism_never_fails_and_says_why_in_one_line(engines_dir, monkeypatch):
    lines = []
    monkeypatch.setattr(engines.shutil, "which", lambda name: None if name == "go" else f"/usr/bin/{name}")
    assert engines.fetch_prism(echo=lines.append) is not None
    assert lines == ["PrismRunner: skipped: go not on PATH"]
    assert "go not on PATH" in engines.unavailable("PrismRunner")
    monkeypatch.setattr(engines.shutil, "which", lambda name: f"/usr/bin/{name}")
    built = []

    def fake_go(module, gobin):
        built.append(module)
        (gobin / "prism").write_bytes(b"#!/bin/sh\n")
        (gobin / "prism").chmod(0o755)

    monkeypatch.setattr(engines, "_go_install", fake_go)
    assert engines.fetch_prism(echo=lines.append) is None
    assert built == [f"{engines.PRISM_MODULE}@v{engines.beam_version()}"] and engines.unavailable("PrismRunner") is None
    assert not (engines_dir / "UNAVAILABLE-PrismRunner.txt").exists()
    engines.fetch_prism(echo=lines.append)
    assert len(built) == 1                             # present: nothing built again
    engines.prism_path().unlink()
    monkeypatch.setattr(engines, "_go_install", lambda module, gobin: "go: module lookup disabled by GOPROXY=off")
    assert "GOPROXY=off" in engines.fetch_prism(echo=lines.append)
    assert "GOPROXY=off" in engines.unavailable("PrismRunner")
