"""End to end on the demo web: every planted case handled, stats add up, shards verify and decode to the
extracted text, and a second run writes byte-identical shards."""
import hashlib
import json
from pathlib import Path

import pytest
import requests
from apache_beam.options.pipeline_options import PipelineOptions

from core.shard_format import open_shard, read_manifest, shard_tokens, verify
from core.tokenizer import EOT, decode
from crawl.text.extract import extract_text
from pipeline.demo.web import build_demo
from pipeline.demo.run import case_outcomes, demo_config, kept_urls, unexpected
from pipeline.runner import run


def run_demo(out: Path):
    demo = build_demo(out / "web", seed=0)
    with demo.web:
        stats = run(demo_config(demo.dump_path, demo.web.proxy_url, quiet=True), str(out / "shards"),
                    PipelineOptions(["--runner=FnApiRunner"]), echo=lambda *a: None)
        proxies = {"http": demo.web.proxy_url}
        served = {url: requests.get(url, proxies=proxies, timeout=10).content for url in demo.expected_kept_urls}
    return demo, stats, served


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return (out,) + run_demo(out)


def test_every_planted_case_handled(demo_run):
    out, demo, stats, _ = demo_run
    outcomes = case_outcomes(demo.planted, str(out / "shards"), stats)
    assert set(outcomes) == set(demo.planted)
    assert unexpected(outcomes) == []


def test_stats_add_up_at_every_stage(demo_run):
    out, _, stats, _ = demo_run
    on_disk = json.loads((out / "shards" / "stats.json").read_text())
    assert on_disk["stages"] == stats["stages"]
    for name in ("source", "submissions", "links", "fetch", "extract", "quality", "dedup", "shards"):
        s = stats["stages"][name]
        assert s["in"] == s["out"] + sum(s["dropped"].values()), name
    chain = [("source", "submissions"), ("submissions", "links"), ("links", "fetch"), ("fetch", "extract"),
             ("extract", "quality"), ("quality", "dedup"), ("dedup", "shards")]
    for a, b in chain:   # what one stage keeps is what the next one takes in
        assert stats["stages"][a]["out"] == stats["stages"][b]["in"], (a, b)
    manifest = read_manifest(out / "shards")
    assert manifest["stats"]["stages"] == stats["stages"]


def test_kept_exactly_the_eligible_links(demo_run):
    out, demo, _, _ = demo_run
    assert kept_urls(str(out / "shards")) == set(demo.expected_kept_urls)


def test_shards_verify_and_decode_to_extracted_text(demo_run):
    out, _, _, served = demo_run
    shards = out / "shards"
    assert verify(shards) == []
    checked = 0
    for s in read_manifest(shards)["shards"]:
        table = open_shard(shards / s["name"])
        tokens, offsets = shard_tokens(shards / s["name"])
        for i, url in enumerate(table.column("url").to_pylist()):
            doc = tokens[offsets[i]:offsets[i + 1]]
            assert doc[-1] == EOT
            assert decode(doc[:-1]) == extract_text(served[url], url).strip()
            checked += 1
    assert checked == len(served)


def test_second_run_is_byte_identical(demo_run, tmp_path):
    out, *_ = demo_run
    run_demo(tmp_path)

    def digests(d):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((d / "shards").glob("data/*.arrow"))}
    first, second = digests(out), digests(tmp_path)
    assert first and first == second
