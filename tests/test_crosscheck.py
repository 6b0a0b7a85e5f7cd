"""stats.json's account from the data (manifest + _drops/counts) and its check against the metrics: what catches a
runner that counts a retried bundle twice, or returns no metrics at all."""
import json
from collections import Counter

from pipeline.crosscheck import disagreements, from_data


def _out(tmp_path, docs=(3, 2), drops=(("fetch", "http_4xx"), ("fetch", "http_4xx"), ("extract", "too_short"))):
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": [{"docs": n} for n in docs]}))
    (tmp_path / "_drops").mkdir()
    counts = Counter(drops)
    (tmp_path / "_drops" / "counts-00000-of-00001.jsonl").write_text(
        "".join(json.dumps({"stage": s, "reason": r, "records": n}) + "\n" for (s, r), n in counts.items()))
    return str(tmp_path)


def test_from_data_counts_kept_docs_and_drops_by_reason(tmp_path):
    data = from_data(_out(tmp_path))
    assert data["shards_out"] == 5 and data["drops_written"]
    assert data["dropped"] == {"extract": {"too_short": 1}, "fetch": {"http_4xx": 2}}


def test_agreeing_metrics_pass_and_double_counts_are_named(tmp_path):
    data = from_data(_out(tmp_path))
    stats = {"fetch": {"dropped": {"http_4xx": 2}}, "extract": {"dropped": {"too_short": 1}},
             "links": {"dropped": {"duplicate_url": 7}},      # merges are not drops/ lines: not compared
             "shards": {"out": 5, "dropped": {}}}
    assert disagreements(stats, data) == []
    stats["fetch"]["dropped"]["http_4xx"] = 3                 # a retried bundle counted twice
    stats["shards"]["out"] = 6
    assert disagreements(stats, data) == [
        "shards: metrics count 6 documents out, the manifest lists 5",
        "fetch: metrics count 3 dropped as http_4xx, the data has 2 records"]


def test_without_drops_or_manifest(tmp_path):
    data = from_data(str(tmp_path))
    assert data == {"shards_out": None, "dropped": {}, "drops_written": False,
                    "examples_only": ["source", "submissions", "links"]}
    assert disagreements({"shards": {"out": 4}}, data) == []
