"""Dataflow's job for the demo, built and validated offline: no credentials, no network.

`--dry_run` makes DataflowRunner stop after building and validating the job; the job description the service
would receive (worker pools, staged packages, SDK container, pipeline options) is then made by Beam's own
client with a local staging folder (Beam stages to a non-gs:// path by copying) and `--no_auth`. What a real
submission needs is checked in it: the project's wheel is staged and carries the GPT-2 vocabulary, which a
worker with no cache and no network finds inside the package; the worker options reach the worker pool."""
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest

pytest.importorskip("google.cloud.dataflow", reason="needs the apache-beam[gcp] extra: pip install -e '.[test]'")

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions  # noqa: E402
from apache_beam.portability.api import beam_runner_api_pb2  # noqa: E402
from apache_beam.runners.dataflow.internal import apiclient  # noqa: E402

from core.tokenizer import VOCAB_SHA256  # noqa: E402
from pipeline import worker_package  # noqa: E402
from pipeline.demo.run import demo_config  # noqa: E402
from pipeline.runner import run  # noqa: E402
import webtext as cli  # noqa: E402

BUCKET = "gs://webtext-offline"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return worker_package.build(tmp_path_factory.mktemp("dist"))


def dataflow_args(wheel, *more):
    return ["--runner=DataflowRunner", "--dry_run=True", "--project=webtext-offline", "--region=us-central1",
            f"--temp_location={BUCKET}/tmp", "--sdk_location=container", f"--extra_package={wheel}",
            "--machine_type=n2-standard-4", "--max_num_workers=8", "--job_name=webtext-demo", *more]


def test_webtext_run_dry_run_builds_the_job_offline(wheel, capsys):
    rc = cli.cmd_run(["--input", f"{BUCKET}/dumps/RS_2017-*.zst", "--out", f"{BUCKET}/shards",
                      *dataflow_args(wheel)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "dry run: job webtext-demo built and validated" in out


def test_job_description_holds_package_vocab_and_worker_options(wheel, tmp_path):
    cfg = demo_config(f"{BUCKET}/dumps/RS_demo.zst", "http://127.0.0.1:1", quiet=True)
    job = run(cfg, f"{BUCKET}/shards", PipelineOptions(dataflow_args(wheel)), echo=lambda *a: None)["job"]
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"HarvestLinks", "FetchPages", "ExtractDocuments", "Deduplicate", "WriteShards"} <= names

    # the description the service would get, staged to a local folder instead of GCS
    stage = tmp_path / "staging"
    stage.mkdir()
    gcp = job.options.view_as(GoogleCloudOptions)
    gcp.no_auth = True
    job.google_cloud_options.staging_location = gcp.staging_location = str(stage)
    apiclient.DataflowApplicationClient(job.options, str(stage)).create_job_description(job)
    env = json.loads(str(job))["environment"]
    pool = env["workerPools"][0]
    assert pool["machineType"] == "n2-standard-4" and pool["autoscalingSettings"]["maxNumWorkers"] == 8
    image = f"beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:"
    assert image in pool["workerHarnessContainerImage"]
    assert wheel.name in {p["name"] for p in pool["packages"]}
    assert (stage / "extra_packages.txt").read_text().split() == [wheel.name]
    options = {o["key"]: o["value"] for o in env["sdkPipelineOptions"]["display_data"]}
    assert options["runner"] == "DataflowRunner" and options["project"] == "webtext-offline"

    staged = stage / wheel.name
    with zipfile.ZipFile(staged) as z:
        assert hashlib.sha256(z.read(worker_package.ASSET)).hexdigest() == VOCAB_SHA256
    graph = beam_runner_api_pb2.Pipeline.FromString((stage / "pipeline.pb").read_bytes())
    assert names <= {t.unique_name for t in graph.components.transforms.values()}


def test_a_worker_finds_the_vocabulary_in_the_package(wheel, tmp_path):
    """A worker has the wheel but no ~/.cache copy and no network: tokenizing must still work."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "WEBTEXT_GPT2_VOCAB"}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(site),
               TIKTOKEN_CACHE_DIR=str(tmp_path / "tk"), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9")   # no network: tiktoken's own download must not be what works
    code = ("import core.tokenizer as t; assert t.__file__.startswith(%r), t.__file__; "
            "print(t.encode_document('hello world'))" % str(site))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[31373, 995, 50256]"
