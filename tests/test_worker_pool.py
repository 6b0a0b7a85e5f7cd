"""The demo with its DoFns in a separate SDK worker pool, the shape in which Flink and Spark on Kubernetes (and
any `--environment_type=EXTERNAL` cluster) run Python: the job goes through the Job API (PortableRunner, here
with an embedded job server) and every bundle runs in a harness process that the pool started, one that
shares nothing with the submitter. Those workers import webtext from the worker wheel (pipeline/worker_package)
and have no ~/.cache and no WEBTEXT_GPT2_VOCAB: the vocabulary has to come with the package. The shards must
be the local runner's, byte for byte, and the stats balanced."""
import os
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from pipeline import worker_package
from test_engines import _demo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker_pool(tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(worker_package.build(tmp_path / "dist")) as z:
        z.extractall(site)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "WEBTEXT_GPT2_VOCAB"}
    # the pool starts each harness as `python -c ...` from PATH: this venv's python, webtext from the wheel
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), PYTHONPATH=str(site),
               HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    work = tmp_path / "worker"
    work.mkdir()
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or pool.poll() is not None:
                    pytest.fail("the SDK worker pool did not start")
                time.sleep(0.2)
        yield f"localhost:{port}"
    finally:
        pool.terminate()
        pool.wait(timeout=30)


@pytest.mark.timeout(300)
def test_demo_on_a_separate_worker_pool_matches_local_runner(tmp_path, worker_pool):
    local = _demo(tmp_path / "local", [])
    pooled = _demo(tmp_path / "pool", ["--runner=PortableRunner", "--job_endpoint=embed",
                                       "--environment_type=EXTERNAL", f"--environment_config={worker_pool}"])
    assert pooled["summary"] == local["summary"]
    assert pooled["digests"] == local["digests"] and len(local["digests"]) == 5   # 4 train shards + 1 val
    assert pooled["entries"] == local["entries"]
    assert pooled["stats"]["unbalanced"] == [] and pooled["stats"]["stages"]["shards"]["out"] > 40
    assert pooled["stats"]["metrics_vs_data"] == []
