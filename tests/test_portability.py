"""The pipeline is runner-portable: its proto round-trips, and the Job API path that Spark and Flink use
(PortableRunner, here with an embedded job server) writes the same shards as the local FnApiRunner."""
import hashlib

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.build import build
from pipeline.demo.web import build_demo
from pipeline.demo.run import demo_config
from pipeline.runner import run


def test_pipeline_proto_round_trip(tmp_path):
    cfg = demo_config(tmp_path / "RS.zst", "http://127.0.0.1:1", quiet=True)
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    build(p, cfg, str(tmp_path / "out"))
    proto = p.to_runner_api()
    again = beam.Pipeline.from_runner_api(proto, p.runner, p._options).to_runner_api()
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"HarvestLinks", "FetchPages", "ExtractDocuments", "Deduplicate", "WriteShards"} <= names
    assert len(again.components.transforms) == len(proto.components.transforms)


def test_portable_runner_matches_fnapi_runner(tmp_path):
    demo = build_demo(tmp_path / "web")
    outputs = {}
    with demo.web:
        cfg = demo_config(demo.dump_path, demo.web.proxy_url, quiet=True)
        for name, args in (("fnapi", ["--runner=FnApiRunner"]),
                           ("portable", ["--runner=PortableRunner", "--job_endpoint=embed",
                                         "--environment_type=LOOPBACK"])):
            stats = run(cfg, str(tmp_path / name), PipelineOptions(args), echo=lambda *a: None)
            assert stats["unbalanced"] == [] and stats["stages"]["shards"]["out"] > 40
            outputs[name] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                             for p in sorted((tmp_path / name).glob("data/*.arrow"))}
    assert outputs["fnapi"] == outputs["portable"]
