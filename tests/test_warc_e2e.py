"""Capture the demo crawl as WARC, then rebuild identical shards from the WARCs alone (no network)."""
import hashlib

from apache_beam.options.pipeline_options import PipelineOptions

from webtext import main
from pipeline.config import load_config
from pipeline.demo.web import build_demo
from pipeline.demo.run import demo_config
from pipeline.runner import run


def digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*.arrow"))}


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


KILLED_CAPTURE = r"""
import json, os, signal, sys
from core.records import Link, Page
from crawl.fetch.fetcher import FetchResult
from crawl.fetch.warc import WarcSink
sink = WarcSink(sys.argv[1], commit_seconds=0)          # no timer: everything is left in temp files
for i, path in enumerate(json.loads(sys.argv[2])):
    url = f"http://site{i}.example/article"
    body = open(path, "rb").read()
    link = Link(url, f"site{i}.example", 9, ("science",), 1_400_000_000, 1)
    sink.add(link, FetchResult("ok", Page(link, url, 200, "text/html", body, "", 1.6e9)))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_extract_from_a_killed_capture_and_a_forged_line(tmp_path, corpus):
    """A capture killed before any commit left only temp files: `extract --warc` recovers them and makes
    documents; a forged outcomes line is a counted drop, and the extract stage still balances."""
    import json
    import os
    import subprocess
    import sys
    expectations = json.loads((corpus / "pages" / "expectations.json").read_text())
    english = [str(corpus / "pages" / n) for n, e in sorted(expectations.items())
               if e["lang_attr"] == "en" and not e["is_wikipedia"]][:8]
    warc = tmp_path / "warc"
    warc.mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", KILLED_CAPTURE, str(warc), json.dumps(english)], cwd=root,
                   env={**os.environ, "PYTHONPATH": root})
    assert not list(warc.glob("outcomes-*.jsonl")) and len(list(warc.glob(".*.tmp"))) == 2
    link = {"url": "http://evil.example/x", "host": "evil.example", "karma": 9, "subreddits": [],
            "created_utc": 0, "submissions": 1}
    (warc / "outcomes-forged.jsonl").write_text(json.dumps(
        {"url": link["url"], "outcome": "ok", "detail": "", "warc": "../../../etc/passwd", "offset": 0,
         "link": link}) + "\n")
    out = tmp_path / "out"
    assert main(["extract", "--warc", str(warc), "--out", str(out), "--quiet"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    extract = stats["stages"]["extract"]
    assert extract["in"] == len(english) + 1
    assert extract["dropped"].get("warc_bad_outcome") == 1
    assert extract["in"] == extract["out"] + sum(extract["dropped"].values())
    assert stats["unbalanced"] == []
    assert stats["stages"]["shards"]["out"] >= 3
    assert not list(warc.glob(".*.tmp"))
