"""The shard folder opens in the tools researchers use, each in the one line the dataset card documents: the Hub's
layout (card README.md on top, the shards in data/), so pyarrow.dataset, datasets.load_dataset, Polars and DuckDB
need no file list and no exclusions. Folders written before (format 1, shards beside the manifest) stay readable."""
import json
import re
import shutil

import pytest

from test_data_loader import write_prose_shards

from pipeline.card import write_card
from core.shard_format import DATA_DIR, FORMAT_VERSION, read_manifest, verify

STATS = {"stages": {"links": {"in": 10, "out": 7, "dropped": {"low_karma": 3}, "extra": {}, "balanced": True}}}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = write_prose_shards(tmp_path_factory.mktemp("readers") / "corpus")
    write_card(str(d), STATS)
    (d / "stats.json").write_text("{}")
    return d


def _lines(d):
    """The card's documented lines, by tool."""
    block = (d / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    return {tool: line for line in block.splitlines() for tool in ("pyarrow", "datasets", "polars", "duckdb")
            if f"import {tool}" in line}


def test_layout_is_the_hubs(corpus_dir):
    m = read_manifest(corpus_dir)
    assert m["format_version"] == FORMAT_VERSION == 2
    assert all(s["name"].startswith(f"{DATA_DIR}/") for s in m["shards"])
    assert sorted(p.name for p in (corpus_dir / DATA_DIR).iterdir()) == sorted(s["name"][5:] for s in m["shards"])
    assert verify(corpus_dir) == []


def test_each_tool_opens_it_in_the_documented_line(corpus_dir, tmp_path, monkeypatch):
    pytest.importorskip("polars"), pytest.importorskip("duckdb"), pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))          # the datasets cache goes to the test's folder
    totals = read_manifest(corpus_dir)["totals"]
    docs = totals["train"]["docs"] + totals["val"]["docs"]
    lines = {k: v.replace("DIR", str(corpus_dir)) for k, v in _lines(corpus_dir).items()}
    assert set(lines) == {"pyarrow", "datasets", "polars", "duckdb"}
    scope = {}
    exec(lines["pyarrow"], scope)
    assert scope["t"].count_rows() == docs
    exec(lines["polars"], scope)
    assert scope["df"].select(scope["pl"].len()).collect().item() == docs
    exec(lines["duckdb"].replace(".limit(5).show()", ".aggregate('count(*)').fetchall()[0][0]").replace(
        "duckdb.from_arrow", "n = duckdb.from_arrow"), scope)
    assert scope["n"] == docs
    import datasets
    datasets.config.HF_DATASETS_CACHE = tmp_path / "hf"   # read at import: the env var above is too late
    exec(lines["datasets"].replace(")", f", cache_dir={str(tmp_path / 'hf')!r})", 1),
         scope)
    dd = scope["dd"]
    assert set(dd) == {"train", "validation"}
    assert dd["train"].num_rows == totals["train"]["docs"] and dd["validation"].num_rows == totals["val"]["docs"]
    assert dd["train"].features["tokens"].feature.dtype == "uint16"


def test_a_format_1_folder_stays_readable(corpus_dir, tmp_path):
    """Shards beside manifest.json, named without data/: the trainer and `shards verify` take it as before."""
    from train.data import checked_shards
    old = tmp_path / "old"
    shutil.copytree(corpus_dir, old)
    for p in (old / DATA_DIR).iterdir():
        p.rename(old / p.name)
    (old / DATA_DIR).rmdir()
    m = json.loads((old / "manifest.json").read_text())
    m["format_version"] = 1
    for s in m["shards"]:
        s["name"] = s["name"].removeprefix(f"{DATA_DIR}/")
    (old / "manifest.json").write_text(json.dumps(m))
    assert verify(old) == []
    assert [re.sub(r".*/", "", p) for p, _ in checked_shards(old, "train")] == [
        s["name"] for s in m["shards"] if s["split"] == "train"]
