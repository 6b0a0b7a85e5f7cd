"""Capture the demo crawl as WARC, then rebuild identical shards from the WARCs alone (no network)."""
import hashlib

from apache_beam.options.pipeline_options import PipelineOptions

from webtext import main
from pipeline.config import load_config
from pipeline.demo.web import build_demo
from pipeline.demo.run import demo_config
from pipeline.runner import run


def digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.arrow"))}


def test_extract_from_warc_rebuilds_the_same_shards(tmp_path):
    demo = build_demo(tmp_path / "web")
    warc = tmp_path / "warc"
    base = demo_config(demo.dump_path, "http://unused", quiet=True)
    with demo.web:
        cfg = load_config(None, {"run": {"inputs": [str(demo.dump_path)], "quiet": True},
                                 "fetch": {"http_proxy": demo.web.proxy_url, "min_delay": 0.0,
                                           "warc_dir": str(warc)},
                                 "shards": {k: v for k, v in base.to_dict()["shards"].items()}})
        stats = run(cfg, str(tmp_path / "crawl"), PipelineOptions(["--runner=FnApiRunner"]), echo=lambda *a: None)
    assert list(warc.glob("*.warc.gz")), "no WARC written"
    # The web is stopped: everything below comes from the WARC files.
    assert main(["extract", "--warc", str(warc), "--out", str(tmp_path / "rebuilt"), "--quiet",
                 "--set", "shards.target_tokens=8000", "--set", "shards.batch_tokens=4096",
                 "--set", "shards.val_fraction=0.1"]) == 0
    assert digests(tmp_path / "crawl") == digests(tmp_path / "rebuilt")
    assert stats["stages"]["fetch"]["out"] > 40
