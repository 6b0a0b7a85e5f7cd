"""Apache Flink and Apache Spark through Beam's portable runners: where their job-server jars come from.

Beam's Python FlinkRunner and SparkRunner hand the pipeline to a Java job server (a shaded jar that Beam publishes
on Maven Central for each SDK version, and for each Flink minor) which translates it for the engine and starts
the engine itself for a local master (`--flink_master=[local]`, `--spark_master_url=local[N]`); the Python DoFns
run in an SDK harness (LOOPBACK: inside the submitting process, Beam's default for a local master). Left alone,
Beam downloads that jar at the first run; `make engines` (`python -m pipeline.engines fetch`) fetches it once with
`mvn` into .engines/ instead, and a run is then pointed at it, so no run downloads anything. When Maven does not
serve a jar, the exact mvn error is kept in .engines/UNAVAILABLE-<runner>.txt: it is what `webtext demo --runner
FlinkRunner` says and what the engine tests print as their skip reason.

A jar from elsewhere works too: --flink_job_server_jar / --spark_job_server_jar, or the environment variables
WEBTEXT_FLINK_JOB_SERVER_JAR / WEBTEXT_SPARK_JOB_SERVER_JAR.

Beam's Prism runner (--runner PrismRunner) is a Go binary that Beam downloads from GitHub at first use. Where `go`
is on the PATH, `make engines` builds it instead from the Go module proxy (`go install .../cmd/prism@v<SDK>`)
into .engines/prism, and a PrismRunner run is pointed at it (--prism_location); without `go` it says so in one
line and Beam's own download stays the fallback.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

# Beam (and pipeline.config, which imports it) is imported where needed: `make engines` should not pay for, nor
# log, Beam's import-time GCP probe.
GROUP = "org.apache.beam"
# The Flink minor the jar is built for: the newest that Beam 2.77 publishes (its FlinkRunner's default too,
# FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS[-1]); passed along as --flink_version so the two always agree.
FLINK_VERSION = "2.2"


@dataclass(frozen=True)
class Engine:
    runner: str        # Beam's runner name
    option: str        # the Beam option that takes a local jar path
    env_var: str       # a jar from elsewhere
    artifact: str      # Maven artifactId (version = the Python SDK's)


ENGINES: Dict[str, Engine] = {
    "FlinkRunner": Engine("FlinkRunner", "flink_job_server_jar", "WEBTEXT_FLINK_JOB_SERVER_JAR",
                          f"beam-runners-flink-{FLINK_VERSION}-job-server"),
    "SparkRunner": Engine("SparkRunner", "spark_job_server_jar", "WEBTEXT_SPARK_JOB_SERVER_JAR",
                          "beam-runners-spark-3-job-server"),
}


def beam_version() -> str:
    """The jar version must be the Python SDK's (the job server and the SDK harness speak one protocol)."""
    from importlib.metadata import version
    return version("apache-beam")


def engines_dir() -> Path:
    return Path(os.environ.get("WEBTEXT_ENGINES_DIR") or Path(__file__).resolve().parents[1] / ".engines")


def coordinates(engine: Engine) -> str:
    return f"{GROUP}:{engine.artifact}:{beam_version()}"


def jar_path(engine: Engine) -> Path:
    if os.environ.get(engine.env_var):
        return Path(os.environ[engine.env_var])
    return engines_dir() / f"{engine.artifact}-{beam_version()}.jar"


def _unavailable_file(engine: Engine) -> Path:
    return engines_dir() / f"UNAVAILABLE-{engine.runner}.txt"


def unavailable(runner: str) -> Optional[str]:
    """None when `runner` can run here (Java on PATH and its jar present; for Prism, .engines/prism); else one line
    saying why and what to do."""
    if runner == "PrismRunner":
        return prism_unavailable()
    engine = ENGINES[runner]
    if shutil.which("java") is None:
        return f"{runner} needs Java 11+ on PATH (its job server is a Java program); none found"
    jar = jar_path(engine)
    if jar.is_file():
        return None
    why = f"no {runner} job-server jar at {jar}: run `make engines`"
    note = _unavailable_file(engine)
    if note.is_file():
        why += f" (last try: {note.read_text().strip()})"
    return why


def _runner_name(options) -> str:
    from apache_beam.options.pipeline_options import StandardOptions
    runner = options.view_as(StandardOptions).runner
    return str(runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1]


def prepare(options):
    """Point a FlinkRunner/SparkRunner run at the jar that `make engines` fetched, so nothing is downloaded at run
    time; a one-line UsageError when there is none. A PrismRunner run gets .engines/prism where it is there.
    Other runners pass through untouched."""
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, SparkRunnerOptions

    from core.settings import UsageError

    runner = _runner_name(options)
    if runner == "PrismRunner":
        from apache_beam.options.pipeline_options import PrismRunnerOptions
        view = options.view_as(PrismRunnerOptions)
        if not view.prism_location and prism_unavailable() is None:   # else Beam's own download (or cache)
            view.prism_location = str(prism_path())
        return options
    engine = ENGINES.get(runner)
    if engine is None:
        return options
    view = options.view_as(FlinkRunnerOptions if runner == "FlinkRunner" else SparkRunnerOptions)
    given = getattr(view, engine.option)
    if given:   # the user's own jar (a path or URL): Beam checks it
        return options
    why = unavailable(runner)
    if why:
        raise UsageError(why)
    setattr(view, engine.option, str(jar_path(engine)))
    if runner == "FlinkRunner":
        view.flink_version = FLINK_VERSION
    return options


MVN_ERROR = re.compile(r"\[ERROR\]\s*(?:Failed to execute goal[^:]*:\s*)?(.*)")


def _mvn_copy(coords: str, dest: Path) -> Optional[str]:
    """Fetch one artifact (no transitive dependencies: job-server jars are shaded); None, or mvn's error line."""
    if shutil.which("mvn") is None:
        return "mvn not on PATH"
    # -U: ask the repository again instead of repeating a cached "not found" from an earlier try
    cmd = ["mvn", "-B", "-q", "-U", "dependency:copy", f"-Dartifact={coords}", f"-DoutputDirectory={dest}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(cmd)}` ran past 15 minutes"
    if proc.returncode == 0:
        return None
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    for line in plain.splitlines():
        m = MVN_ERROR.match(line.strip())
        if m and m.group(1).strip():
            return m.group(1).strip()
    return f"mvn exited {proc.returncode}"


def fetch(runners: List[str] = list(ENGINES), echo=print) -> Dict[str, Optional[str]]:
    """Fetch the missing jars into .engines/; {runner: None or the reason it is unavailable}. Idempotent: a jar
    already there costs nothing."""
    out: Dict[str, Optional[str]] = {}
    engines_dir().mkdir(parents=True, exist_ok=True)
    for runner in runners:
        engine = ENGINES[runner]
        jar = jar_path(engine)
        if jar.is_file():
            echo(f"{runner}: {jar} (present)")
            out[runner] = None
            continue
        coords = coordinates(engine)
        echo(f"{runner}: fetching {coords} with mvn ...")
        with tempfile.TemporaryDirectory(dir=engines_dir()) as tmp:
            error = _mvn_copy(coords, Path(tmp))
            got = list(Path(tmp).glob("*.jar"))
            if error is None and got:
                os.replace(got[0], jar)   # whole or absent: a torn download never looks like a jar
        note = _unavailable_file(engine)
        if error is None and jar.is_file():
            note.unlink(missing_ok=True)
            echo(f"{runner}: {jar}")
        else:
            error = error or "mvn wrote no jar"
            note.write_text(f"{coords}: {error}\n")
            echo(f"{runner}: UNAVAILABLE: {coords}: {error}")
        out[runner] = unavailable(runner)
    return out


# ------------------------------------------------------------------------------------------------ Prism
PRISM_MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"


def prism_path() -> Path:
    return engines_dir() / "prism"


def prism_unavailable() -> Optional[str]:
    """None when .engines/prism is there; else one line saying why (what `make engines` recorded)."""
    if prism_path().is_file() and os.access(prism_path(), os.X_OK):
        return None
    why = f"no Prism binary at {prism_path()}: run `make engines` (needs `go` on the PATH)"
    note = engines_dir() / "UNAVAILABLE-PrismRunner.txt"
    if note.is_file():
        why += f" (last try: {note.read_text().strip()})"
    return why


def _go_install(module: str, gobin: Path) -> Optional[str]:
    """`go install module` into gobin; None, or the reason it did not work (one line)."""
    if shutil.which("go") is None:
        return "go not on PATH"
    cmd = ["go", "install", module]
    try:   # downloads through the Go module proxy and compiles: minutes, once
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "GOBIN": str(gobin)})
    except subprocess.TimeoutExpired:
        return f"`{' '.join(cmd)}` ran past 30 minutes"
    except OSError as e:
        return f"`{' '.join(cmd)}` could not start ({e})"
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"go exited {proc.returncode}"


def fetch_prism(echo=print) -> Optional[str]:
    """Build Prism (of this SDK's version) into .engines/prism unless it is there; None or why not. Never raises:
    Prism is optional (Beam downloads one itself where it can)."""
    try:
        engines_dir().mkdir(parents=True, exist_ok=True)
        if prism_unavailable() is None:
            echo(f"PrismRunner: {prism_path()} (present)")
            return None
        module = f"{PRISM_MODULE}@v{beam_version()}"
        if shutil.which("go") is None:
            error = "go not on PATH"
        else:
            echo(f"PrismRunner: building {module} with go ...")
            with tempfile.TemporaryDirectory(dir=engines_dir()) as tmp:
                error = _go_install(module, Path(tmp))
                if error is None:
                    os.replace(Path(tmp) / "prism", prism_path())   # whole or absent
        note = engines_dir() / "UNAVAILABLE-PrismRunner.txt"
        if error is None:
            note.unlink(missing_ok=True)
            echo(f"PrismRunner: {prism_path()}")
        else:
            note.write_text(f"{module}: {error}\n")
            echo(f"PrismRunner: skipped: {error}")
        return prism_unavailable()
    except Exception as e:   # e.g. a read-only .engines: said, and `make engines` goes on
        echo(f"PrismRunner: skipped: {type(e).__name__}: {e}")
        return str(e)


def main(argv: List[str]) -> int:
    if argv[:1] != ["fetch"]:
        print("usage: python -m pipeline.engines fetch   (Beam's Flink and Spark job-server jars and the Prism "
              "runner into .engines/)")
        return 2
    fetch()
    fetch_prism()
    # Not an error: the engine tests skip with the reason recorded above, and the rest of the suite still runs.
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
