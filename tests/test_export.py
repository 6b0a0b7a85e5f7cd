"""Shards every tool opens: the shard directory itself in pyarrow.dataset / Polars / DuckDB, and the nanogpt, hf
and parquet exports in nanoGPT's np.memmap, HF datasets (load_from_disk, Dataset.from_file), DuckDB and Polars."""

import hashlib
import gzip
import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from core.shard_format import read_manifest, shard_tokens
from core.token_bytes import decode_bytes
from core.tokenizer import EOT, decode
from pipeline.shards import cli as shards_cli
from test_shards import prose_corpus, tokenized, write_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = write_dir(tmp_path_factory.mktemp("shards"), [tokenized(d) for d in prose_corpus()])
    (out / "_drops").mkdir()   # what `webtext run` leaves beside the shards
    (out / "_drops" / "drops-00000-of-00001.jsonl.gz").write_bytes(
        gzip.compress(b'{"stage": "fetch", "reason": "http_404"}\n'))
    (out / "stats.json").write_text("{}")
    return out


def split_tokens(shard_dir, split):
    return np.concatenate([shard_tokens(shard_dir / s["name"])[0] for s in read_manifest(shard_dir)["shards"]
                           if s["split"] == split])


def rows_of(shard_dir, split):
    """Every doc of a split as {doc_id, tokens} in manifest order, read the trainer's way."""
    out = []
    for s in read_manifest(shard_dir)["shards"]:
        if s["split"] == split:
            table = pa.ipc.open_file(pa.memory_map(str(shard_dir / s["name"]))).read_all()
            out += [(r["doc_id"], r["tokens"]) for r in table.select(["doc_id", "tokens"]).to_pylist()]
    return out


def export(capsys, *argv):
    rc = shards_cli.main(["export", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_vectorized_decode_matches_tiktoken(shard_dir):
    tokens, offsets = shard_tokens(next(shard_dir.rglob("train-*.arrow")))
    data, starts = decode_bytes(tokens)
    for i in range(len(offsets) - 1):
        a, b = starts[offsets[i]], starts[offsets[i + 1]]
        assert bytes(data[a:b]).decode() == decode(tokens[offsets[i]:offsets[i + 1] - 1].tolist())


# ------------------------------------------------------------------------------------------------ the shards as they are
def test_shard_directory_opens_in_pyarrow_dataset_polars_and_duckdb(shard_dir):
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    train = sorted(str(p) for p in shard_dir.rglob("train-*.arrow"))
    want = rows_of(shard_dir, "train")
    # the documented way: the manifest's (or a glob's) file list, memory-mapped
    mmap_fs = pa.fs.LocalFileSystem(use_mmap=True)
    dataset = pads.dataset(train, format="ipc", filesystem=mmap_fs)
    table = dataset.to_table(columns=["doc_id", "tokens"])
    assert sorted(table.to_pylist(), key=lambda r: r["doc_id"]) == [dict(doc_id=d, tokens=t) for d, t in
                                                                      sorted(want)]
    # the whole data/ folder: it holds the shards only (format 2), so no file needs excluding
    everything = pads.dataset(str(shard_dir / "data"), format="ipc")
    assert sorted(os.path.basename(f) for f in everything.files) == sorted(p.name for p in shard_dir.rglob("*.arrow"))
    assert everything.count_rows() == sum(s["docs"] for s in read_manifest(shard_dir)["shards"])

    lazy = pl.scan_ipc(str(shard_dir / "data" / "train-*.arrow"))   # polars memory-maps uncompressed IPC files
    n_tokens = lazy.select(pl.col("tokens").list.len().sum()).collect().item()
    assert n_tokens == len(split_tokens(shard_dir, "train"))
    assert lazy.collect_schema()["tokens"] == pl.List(pl.UInt16)

    con = duckdb.connect()
    con.register("train", dataset)   # Arrow scan: DuckDB reads the memory-mapped buffers
    docs, toks = con.execute("SELECT count(*), sum(len(tokens)) FROM train").fetchone()
    assert (docs, toks) == (len(want), n_tokens)
    top = con.execute("SELECT doc_id FROM train ORDER BY len(tokens) DESC LIMIT 1").fetchone()[0]
    assert top == max(want, key=lambda r: len(r[1]))[0]


# ------------------------------------------------------------------------------------------------ exports
def test_nanogpt_export_is_the_flat_token_stream(shard_dir, tmp_path, capsys):
    out = tmp_path / "nano"
    rc, _, err = export(capsys, shard_dir, "--format", "nanogpt", "--out", out)
    assert rc == 0, err
    assert "MB/s" in err
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "meta.pkl", "train.bin", "val.bin"]
    for split in ("train", "val"):
        got = np.memmap(out / f"{split}.bin", dtype=np.uint16, mode="r")   # how nanoGPT's train.py reads it
        np.testing.assert_array_equal(got, split_tokens(shard_dir, split))
        assert (got == EOT).sum() == sum(1 for _ in rows_of(shard_dir, split))
    with open(out / "meta.pkl", "rb") as f:
        assert pickle.load(f)["vocab_size"] == 50257
    meta = json.loads((out / "meta.json").read_text())
    assert meta["files"]["train.bin"]["sha256"] == hashlib.sha256((out / "train.bin").read_bytes()).hexdigest()
    assert [s["sha256"] for s in meta["shards"]] == [s["sha256"] for s in read_manifest(shard_dir)["shards"]]
    assert not list(tmp_path.glob(".*tmp*"))
    # an existing non-empty OUT is refused, not overwritten
    rc, _, err = export(capsys, shard_dir, "--format", "nanogpt", "--out", out)
    assert rc == 2 and err.startswith("error: ") and "already exists" in err


def test_hf_export_opens_zero_copy_in_datasets(shard_dir, tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    from datasets.table import MemoryMappedTable

    out = tmp_path / "hf"
    rc, _, err = export(capsys, shard_dir, "--format", "hf", "--out", out, "--quiet")
    assert rc == 0 and err == ""
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation"}     # the Hub's split names, as the dataset card says
    for split in ("train", "val"):
        ds = dd["validation" if split == "val" else split]
        # one memory-mapped table per file (concatenated for a multi-shard split), nothing read into RAM
        blocks = [t for row in ds.data.blocks for t in row] if hasattr(ds.data, "blocks") else [ds.data]
        assert blocks and all(isinstance(t, MemoryMappedTable) for t in blocks)
        assert all(f["filename"].startswith(str(out)) for f in ds.cache_files)
        assert [(r["doc_id"], r["tokens"]) for r in ds.select_columns(["doc_id", "tokens"])] == rows_of(shard_dir, split)
        assert ds.features["tokens"].feature.dtype == "uint16"
    # a single file opens with Dataset.from_file too; the file keeps our schema metadata for other readers
    first = next((out / "train").glob("data-*.arrow"))
    one = datasets.Dataset.from_file(str(first))
    assert one.num_rows == read_manifest(shard_dir)["shards"][0]["docs"]
    assert pa.ipc.open_stream(pa.memory_map(str(first))).schema.metadata[b"eot"] == b"50256"
    info = json.loads((out / "webtext_export.json").read_text())
    for name, f in info["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == f["sha256"]
    # the arrow formatter hands out the uint16 buffers themselves
    tokens = dd["train"].with_format("arrow")[0:2]["tokens"]
    assert tokens.type.value_type == pa.uint16() and tokens[0].as_py() == rows_of(shard_dir, "train")[0][1]


def test_parquet_export_has_tokens_text_and_provenance(shard_dir, tmp_path, capsys):
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")
    import pyarrow.parquet as pq

    out = tmp_path / "corpus.parquet"
    rc, _, err = export(capsys, shard_dir, "--format", "parquet", "--out", out, "--split", "all")
    assert rc == 0, err
    table = pq.read_table(out)
    assert table.column_names == ["doc_id", "url", "text", "tokens", "karma", "subreddits", "created_utc", "split"]
    by_id = {d["doc_id"]: d for d in prose_corpus()}
    for row in table.to_pylist():
        assert row["text"] == by_id[row["doc_id"]]["text"]
        assert row["tokens"][-1] == EOT and decode(row["tokens"][:-1]) == row["text"]
    source = json.loads(pq.read_schema(out).metadata[b"webtext"])
    assert [s["sha256"] for s in source["shards"]] == [s["sha256"] for s in read_manifest(shard_dir)["shards"]]

    con = duckdb.connect()
    per_split = dict(con.execute(f"SELECT split, sum(len(tokens)) FROM read_parquet('{out}') GROUP BY split").fetchall())
    assert per_split == {s: len(split_tokens(shard_dir, s)) for s in ("train", "val")}
    df = pl.read_parquet(out)
    assert df.schema["tokens"] == pl.List(pl.UInt16) and df.height == len(by_id)


def test_export_of_a_damaged_shard_fails_with_one_line(shard_dir, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(shard_dir, damaged)
    victim = next(damaged.rglob("train-*.arrow"))
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    rc, _, err = export(capsys, damaged, "--format", "hf", "--out", tmp_path / "hf")
    assert rc == 1 and err.startswith("error: ") and "sha256" in err and err.count("\n") == 1
    assert not (tmp_path / "hf").exists()
