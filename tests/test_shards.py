"""Shards end to end: real prose -> GPT-2 tokens -> Arrow shards + manifest, read back zero-copy, verified, and
looked at through every `webtext shards` subcommand."""

import hashlib
import json
import random
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydoc_data.topics
import pytest

from core.shard_format import (MANIFEST, TokenizedDoc, bucket_of, open_shard, plan_shards, shard_tokens, split_of,
                               write_manifest)
from core.tokenizer import EOT, decode, encode_document
from pipeline.shards import cli as shards_cli
from pipeline.shards.assemble import write_shard

HOSTS = ("https://docs.python.org/3/reference/", "https://www.example.com/blog/", "http://notes.example.org/")
SUBREDDITS = (("Python",), ("Python", "programming"), ("learnpython",))
VAL_FRACTION, BUCKETS = 0.2, 4096
TARGET_TOKENS = 60_000   # the 79 pydoc topics (~88k train, ~51k val tokens): 2 train shards, 1 val shard


def prose_corpus():
    """Python's bundled English prose (pydoc topics), one document per topic, with varied provenance."""
    docs = []
    for i, (name, text) in enumerate(sorted(pydoc_data.topics.topics.items())):
        url = HOSTS[i % 3] + name
        doc_id = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
        docs.append(dict(doc_id=doc_id, url=url, text=text, karma=3 + i, subreddits=SUBREDDITS[i % 3],
                         created_utc=1_400_000_000 + 86_400 * i))
    return docs


def tokenized(doc):
    return TokenizedDoc(doc["doc_id"], doc["url"], np.array(encode_document(doc["text"]), np.uint16),
                        doc["karma"], doc["subreddits"], doc["created_utc"])


def write_dir(out_dir, docs, target=TARGET_TOKENS, batch_tokens=2**24):
    """Split, bucket and plan by tokens as the pipeline does (pipeline/shards/write.py); every shard, then the
    manifest."""
    key = {d.doc_id: (split_of(d.doc_id, VAL_FRACTION), bucket_of(d.doc_id, BUCKETS)) for d in docs}
    totals = Counter()
    for d in docs:
        totals[key[d.doc_id]] += len(d.tokens)
    plan = plan_shards(dict(totals), target)
    groups = {(split, i): [] for split, n in plan["num_shards"].items() for i in range(n)}
    for d in docs:
        groups[(key[d.doc_id][0], plan["shard"][key[d.doc_id]])].append(d)
    infos = [write_shard(str(out_dir), split, i, plan["num_shards"][split], group, batch_tokens)
             for (split, i), group in groups.items()]
    write_manifest(str(out_dir), infos, config={"source": "pydoc_data.topics"})
    return Path(out_dir)


@pytest.fixture(scope="module")
def corpus():
    docs = prose_corpus()
    return docs, [tokenized(d) for d in docs]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, corpus):
    return write_dir(tmp_path_factory.mktemp("shards"), corpus[1])


@pytest.fixture
def damaged(shard_dir, tmp_path):
    """A private copy to break."""
    return Path(shutil.copytree(shard_dir, tmp_path / "copy"))


def manifest_of(d):
    return json.loads((Path(d) / MANIFEST).read_text())


def run(capsys, *argv):
    rc = shards_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------------ format
def test_round_trip_decodes_to_the_exact_input_text(shard_dir, corpus):
    by_id = {d["doc_id"]: d for d in corpus[0]}
    seen = []
    for entry in manifest_of(shard_dir)["shards"]:
        table = open_shard(shard_dir / entry["name"])
        ids = table.column("doc_id").to_pylist()
        assert ids == sorted(ids)
        for row in table.to_pylist():
            doc = by_id[row["doc_id"]]
            assert row["tokens"][-1] == EOT
            assert decode(row["tokens"][:-1]) == doc["text"]
            assert (row["url"], row["karma"], tuple(row["subreddits"]), row["created_utc"]) == \
                   (doc["url"], doc["karma"], doc["subreddits"], doc["created_utc"])
            seen.append(row["doc_id"])
    assert sorted(seen) == sorted(by_id)
    splits = {e["split"] for e in manifest_of(shard_dir)["shards"] if e["docs"]}
    assert splits == {"train", "val"}


def _mapped_ranges(path):
    target = str(Path(path).resolve())
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def test_shard_tokens_is_a_zero_copy_view_of_the_memory_map(shard_dir, corpus):
    path = shard_dir / "data/train-00000-of-00002.arrow"
    tokens, offsets = shard_tokens(path)
    assert tokens.dtype == np.uint16
    assert tokens.flags.owndata is False and tokens.base is not None
    assert tokens.flags.writeable is False
    address = tokens.ctypes.data
    if Path("/proc/self/maps").exists():   # the data pointer lies inside the kernel's mapping of this very file
        assert any(lo <= address < hi for lo, hi in _mapped_ranges(path)), "tokens are not backed by the mmap"
    expected = {d.doc_id: d.tokens for d in corpus[1]}
    ids = open_shard(path).column("doc_id").to_pylist()
    assert offsets[0] == 0 and offsets[-1] == len(tokens) and len(offsets) == len(ids) + 1
    assert np.array_equal(tokens, np.concatenate([expected[i] for i in ids]))


def test_same_docs_in_any_order_give_byte_identical_shards(tmp_path, corpus):
    docs = corpus[1]
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    a = write_dir(tmp_path / "a", list(reversed(docs)))
    b = write_dir(tmp_path / "b", shuffled)
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.arrow"))
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.arrow")) and len(names) == 3
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert [e["sha256"] for e in manifest_of(a)["shards"]] == [e["sha256"] for e in manifest_of(b)["shards"]]
    assert (a / MANIFEST).read_bytes() == (b / MANIFEST).read_bytes()


# ------------------------------------------------------------------------------------------------ verify
def test_verify_passes_on_good_shards(shard_dir, corpus, capsys):
    total_tokens = sum(len(d.tokens) for d in corpus[1])
    rc, out, _ = run(capsys, "verify", shard_dir)
    assert rc == 0
    assert out.strip() == f"OK: 3 shards, {len(corpus[1])} docs, {total_tokens:,} tokens verified"


def test_verify_catches_a_flipped_byte(damaged, capsys):
    path = damaged / "data/train-00001-of-00002.arrow"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    rc, out, _ = run(capsys, "verify", damaged)
    assert rc == 1
    assert out.splitlines() == [f"data/{path.name}: sha256 does not match the manifest (corrupt or changed file)"]


def _rewrite_shard(d, name, docs):
    """Overwrite one shard and patch its manifest entry so the checksum passes: only content checks can fail."""
    entry_index = next(i for i, e in enumerate(manifest_of(d)["shards"]) if e["name"] == name)
    entry = manifest_of(d)["shards"][entry_index]
    info = write_shard(str(d), entry["split"], entry["index"], entry["num_shards"], docs)
    manifest = manifest_of(d)
    manifest["shards"][entry_index].update(sha256=hashlib.sha256((d / name).read_bytes()).hexdigest(),
                                           bytes=(d / name).stat().st_size, tokens=info.tokens, docs=info.docs)
    (d / MANIFEST).write_text(json.dumps(manifest))


def _docs_of(d, name):
    return [TokenizedDoc(r["doc_id"], r["url"], np.array(r["tokens"], np.uint16), r["karma"],
                         tuple(r["subreddits"]), r["created_utc"]) for r in open_shard(d / name).to_pylist()]


def test_verify_catches_a_token_outside_the_vocabulary(damaged, capsys):
    name = "data/val-00000-of-00001.arrow"
    docs = _docs_of(damaged, name)
    docs[0].tokens[5] = 50300
    _rewrite_shard(damaged, name, docs)
    rc, out, _ = run(capsys, "verify", damaged)
    assert rc == 1
    assert out.splitlines() == [f"{name}: token id 50300 >= vocab size 50257"]


def test_verify_catches_a_missing_eot(damaged, capsys):
    name = "data/train-00000-of-00002.arrow"
    docs = _docs_of(damaged, name)
    docs[2] = docs[2]._replace(tokens=docs[2].tokens[:-1])
    _rewrite_shard(damaged, name, docs)
    rc, out, _ = run(capsys, "verify", damaged)
    assert rc == 1
    assert out.splitlines() == [f"{name}: 1 documents do not end with EOT"]


def test_verify_catches_a_deleted_shard(damaged, capsys):
    (damaged / "data/val-00000-of-00001.arrow").unlink()
    rc, out, _ = run(capsys, "verify", damaged)
    assert rc == 1
    assert out.splitlines() == ["data/val-00000-of-00001.arrow: missing"]


# ------------------------------------------------------------------------------------------------ ls / stats
def test_ls_lists_every_shard_and_totals(shard_dir, corpus, capsys):
    rc, out, _ = run(capsys, "ls", shard_dir)
    assert rc == 0
    lines = out.splitlines()
    for entry in manifest_of(shard_dir)["shards"]:
        row = next(l for l in lines if l.startswith(entry["name"]))
        assert row.split()[:5] == [entry["name"], entry["split"], f"{entry['docs']:,}", f"{entry['tokens']:,}",
                                   f"{entry['bytes']:,}"]
        assert "KiB" in row
    total = next(l for l in lines if l.startswith("total all"))
    assert f" {len(corpus[1]):,} " in total
    val_docs = sum(e["docs"] for e in manifest_of(shard_dir)["shards"] if e["split"] == "val")
    assert f" {val_docs:,} " in next(l for l in lines if l.startswith("total val (1 shard)"))


def test_stats_reports_lengths_domains_karma_subreddits_and_plots(shard_dir, corpus, tmp_path, capsys):
    plot = tmp_path / "lengths.png"
    rc, out, _ = run(capsys, "stats", shard_dir, "--top", 3, "--plot", plot, "--quiet")
    assert rc == 0
    lengths = np.array([len(d.tokens) for d in corpus[1]])
    assert f"p50={np.percentile(lengths, 50):,.0f}" in out and f"max={lengths.max():,}" in out
    assert f"mean={lengths.mean():,.1f}" in out
    karma = np.array([d["karma"] for d in corpus[0]])
    assert f"p95={np.percentile(karma, 95):,.0f}  max={karma.max():,}" in out
    all_row = next(l for l in out.splitlines() if l.startswith("all "))
    assert all_row.split()[:4] == ["all", "3", f"{len(lengths):,}", f"{lengths.sum():,}"]
    hosts = Counter(d["url"].split("/")[2].removeprefix("www.") for d in corpus[0])
    domains = out.split("top 3 domains by docs")[1].split("top 3 domains by tokens")[0].splitlines()[1:4]
    assert sorted((l.split()[0], l.split()[1]) for l in domains) == sorted((h, f"{n:,}") for h, n in hosts.items())
    subs = out.split("top 3 subreddits")[1].splitlines()[1:4]
    assert subs[0].split()[:2] == ["Python", f"{sum('Python' in d['subreddits'] for d in corpus[0]):,}"]
    rc, out1, _ = run(capsys, "stats", shard_dir, "--top", 1, "--split", "val", "-q")
    assert rc == 0 and len(out1.split("top 1 domains by docs")[1].strip().split("\n\n")[0].splitlines()) == 2
    assert f"plot: wrote document-length histogram to {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 1024


# ------------------------------------------------------------------------------------------------ show
def _split_order(shard_dir, split):
    """doc ids of a split in manifest order across its shards."""
    return [i for e in manifest_of(shard_dir)["shards"] if e["split"] == split
            for i in open_shard(shard_dir / e["name"]).column("doc_id").to_pylist()]


def test_show_prints_header_and_exact_text(shard_dir, corpus, capsys):
    by_id = {d["doc_id"]: d for d in corpus[0]}
    train = _split_order(shard_dir, "train")
    for n in (0, len(train) - 1):
        rc, out, _ = run(capsys, "show", shard_dir, n)
        assert rc == 0
        doc = by_id[train[n]]
        header, text = out.split("-" * 80 + "\n", 1)
        assert text == doc["text"] + "\n"
        assert f"doc_id:      {doc['doc_id']}" in header and f"url:         {doc['url']}" in header
        assert f"karma:       {doc['karma']}" in header and ", ".join(doc["subreddits"]) in header
        assert f"tokens:      {len(encode_document(doc['text'])):,} (incl. EOT)" in header
        assert "shard:       data/train-0000" in header
    rc, out, _ = run(capsys, "show", shard_dir, -1, "--split", "val", "--tokens")
    doc = by_id[_split_order(shard_dir, "val")[-1]]
    assert [int(t) for t in out.split("-" * 80 + "\n", 1)[1].split()] == encode_document(doc["text"])
    created = datetime.fromtimestamp(doc["created_utc"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"created_utc: {doc['created_utc']} ({created})" in out


# ------------------------------------------------------------------------------------------------ export
def test_export_jsonl_and_parquet_round_trip(shard_dir, corpus, tmp_path, capsys):
    jsonl, parquet = tmp_path / "corpus.jsonl", tmp_path / "corpus.parquet"
    rc, _, err = run(capsys, "export", shard_dir, "--format", "jsonl", "--out", jsonl)
    assert rc == 0 and "doc/s" in err and "wrote 79 docs" in err   # progress bar and summary on stderr
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    by_id = {d["doc_id"]: d for d in corpus[0]}
    assert len(rows) == len(by_id)
    val = set(_split_order(shard_dir, "val"))
    for row in rows:
        doc = by_id[row["doc_id"]]
        assert row == dict(doc, subreddits=list(doc["subreddits"]), split="val" if row["doc_id"] in val else "train")
    assert [r["doc_id"] for r in rows] == _split_order(shard_dir, "train") + _split_order(shard_dir, "val")

    rc, _, err = run(capsys, "export", shard_dir, "--format", "parquet", "--out", parquet, "--quiet")
    assert rc == 0 and err == ""
    table = pq.read_table(parquet)
    assert table.column_names == ["doc_id", "url", "text", "tokens", "karma", "subreddits", "created_utc", "split"]
    assert table.drop_columns(["tokens"]).to_pylist() == rows
    assert not list(tmp_path.glob(".*tmp*"))   # temp names renamed away

    rc, _, err = run(capsys, "-q", "export", shard_dir, "--format", "jsonl", "--out", jsonl, "--split", "val",
                     "--overwrite")
    assert rc == 0 and err == "" and {json.loads(l)["doc_id"] for l in jsonl.read_text().splitlines()} == val


# ------------------------------------------------------------------------------------------------ mistakes
@pytest.mark.parametrize("argv, says", [
    (["ls", "{missing}"], "does not exist"),
    (["stats", "{empty}"], "no manifest.json"),
    (["verify", "{missing}"], "does not exist"),
    (["verify", "{empty}"], "no manifest.json"),
    (["show", "{dir}", "100000"], "out of range"),
    (["show", "{dir}", "-100000", "--split", "val"], "out of range"),
    (["show", "{dir}", "one"], "invalid int value"),
    (["export", "{dir}", "--format", "csv", "--out", "{tmp}/x.csv"], "invalid choice"),
    (["export", "{dir}", "--format", "parquet", "--out", "{tmp}/no/such/dir/x.parquet"], "does not exist"),
    (["export", "{dir}", "--format", "parquet", "--out", "-"], "jsonl"),
    (["stats", "{dir}", "--plot", "{tmp}/lengths.txt"], ".png"),
    (["stats", "{dir}", "--top", "0"], "--top"),
    (["frobnicate", "{dir}"], "invalid choice"),
    ([], "required"),
])
def test_user_mistakes_exit_2_with_one_error_line(argv, says, shard_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    fill = dict(missing=tmp_path / "nope", empty=tmp_path / "empty", dir=shard_dir, tmp=tmp_path)
    rc, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert "Traceback" not in err and out == ""


def test_damaged_manifest_is_an_error_not_a_traceback(damaged, capsys):
    (damaged / MANIFEST).write_text("{not json")
    rc, _, err = run(capsys, "ls", damaged)
    assert rc == 1 and err.startswith("error: ") and "not valid JSON" in err


# ------------------------------------------------------------------------------------------------ sizing
def test_plan_sizes_shards_by_tokens_at_webtext_scale():
    """~9B tokens (WebText) in 4096 buckets: the count follows from the data, no shard passes the target (so none
    nears the 2**31 int32 offset limit), and each shard is a run of consecutive buckets (one doc_id range)."""
    rng = np.random.default_rng(0)
    totals = {("train", b): int(t) for b, t in enumerate(rng.integers(1_500_000, 2_900_000, 4096))}
    totals.update({("val", b): int(t) for b, t in enumerate(rng.integers(0, 40_000, 4096))})
    target = 2**27
    plan = plan_shards(totals, target)
    train_total = sum(t for (s, _), t in totals.items() if s == "train")
    n = plan["num_shards"]["train"]
    assert train_total > 8e9 and -(-train_total // target) <= n <= -(-train_total // target) + 2
    sums = Counter()
    for (split, b), t in totals.items():
        sums[(split, plan["shard"][(split, b)])] += t
    assert max(sums.values()) <= target < 2**31
    assert sorted(i for s, i in sums if s == "train") == list(range(n))
    order = [plan["shard"][("train", b)] for b in range(4096)]
    assert order == sorted(order)                                   # consecutive buckets, consecutive shards
    assert plan["num_shards"]["val"] == 1
    assert plan_shards({}, target)["num_shards"] == {"train": 1, "val": 1}   # no data: one empty shard per split
    huge = plan_shards({("train", 0): 5, ("train", 1): 3 * target, ("train", 2): 5}, target)
    assert [huge["shard"][("train", b)] for b in range(3)] == [0, 1, 2]   # an oversized bucket stands alone


def test_bucket_of_is_monotone_in_doc_id_and_covers_every_bucket():
    ids = sorted(hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest() for i in range(20_000))
    buckets = [bucket_of(i, 64) for i in ids]
    assert buckets == sorted(buckets) and set(buckets) == set(range(64))
    assert bucket_of("0" * 16, 4096) == 0 and bucket_of("f" * 16, 4096) == 4095


def test_shards_of_several_record_batches_read_back_zero_copy_per_batch(tmp_path, corpus, capsys):
    from core.shard_format import shard_token_batches
    d = write_dir(tmp_path / "b", corpus[1], batch_tokens=8_000)
    expected = {t.doc_id: t.tokens for t in corpus[1]}
    for entry in manifest_of(d)["shards"]:
        path = d / entry["name"]
        parts = shard_token_batches(path)
        assert len(parts) >= 3 and all(len(t) <= 8_000 or len(o) == 2 for t, o in parts)
        for tokens, offsets in parts:
            assert not tokens.flags.owndata and not tokens.flags.writeable
            if Path("/proc/self/maps").exists():
                assert any(lo <= tokens.ctypes.data < hi for lo, hi in _mapped_ranges(path))
            assert offsets[0] == 0 and offsets[-1] == len(tokens)
        ids = open_shard(path).column("doc_id").to_pylist()
        whole, offsets = shard_tokens(path)   # the whole shard, batches concatenated
        assert np.array_equal(whole, np.concatenate([expected[i] for i in ids]))
        assert [len(expected[i]) for i in ids] == np.diff(offsets).tolist()
    rc, out, _ = run(capsys, "verify", d)
    assert rc == 0 and out.startswith("OK: 3 shards")
    single = write_dir(tmp_path / "one", corpus[1])   # same documents in one batch per shard: same manifest totals
    assert [(e["name"], e["docs"], e["tokens"]) for e in manifest_of(single)["shards"]] == \
           [(e["name"], e["docs"], e["tokens"]) for e in manifest_of(d)["shards"]]


def test_writing_a_shard_holds_one_record_batch_not_a_copy_of_the_shard(tmp_path):
    """Python-side allocations while a 16 MB shard is written: one batch (~1 MB) besides the documents, where
    building the file whole in memory took the tokens twice more (concatenated, then the file's bytes)."""
    import tracemalloc
    rng = np.random.default_rng(1)
    docs = [TokenizedDoc(f"{i:016x}", f"http://x.example/{i}", np.append(rng.integers(0, 50000, 4000, dtype=np.uint16),
                                                                   np.uint16(EOT)), 3, ("s",), 0) for i in range(2000)]
    token_bytes = sum(d.tokens.nbytes for d in docs)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        info = write_shard(str(tmp_path), "train", 0, 1, docs, batch_tokens=2**19)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert info.tokens * 2 == token_bytes and info.bytes > token_bytes
    assert info.sha256 == hashlib.sha256((tmp_path / info.name).read_bytes()).hexdigest()
    assert peak < 0.25 * token_bytes, f"writer peaked at {peak / 2**20:.1f} MB for {token_bytes / 2**20:.1f} MB"
