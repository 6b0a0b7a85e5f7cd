"""`webtext shards overlap`: the paper's 8-gram Bloom-filter overlap, checked against a plain-Python reference
(sets of word tuples), and `--remove`, which drops the planted documents and counts them."""

import json

from pipeline.drops import read_drops
import math
import random
import re

import numpy as np
import pytest

from core.shard_format import read_manifest, verify
from core.tokenizer import decode
from pipeline.shards import cli as shards_cli
from pipeline.shards.overlap import BloomFilter, filter_size, mix64, text_grams
from test_shards import prose_corpus, tokenized, write_dir

# The documented normalization, written independently: words are runs of ASCII letters/digits and non-ASCII
# characters outside the punctuation blocks; only ASCII is lower-cased.
WORD = re.compile("[0-9A-Za-z\u00c0-\u1fff\u2080-\u2fff\u3040-\U0010ffff]+")
LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ref_grams(text):
    words = [w.translate(LOWER) for w in WORD.findall(text)]
    return [tuple(words[i:i + 8]) for i in range(len(words) - 7)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = prose_corpus()
    out = write_dir(tmp_path_factory.mktemp("shards"), [tokenized(d) for d in docs])
    return out, docs


def train_docs(shard_dir):
    from core.shard_format import open_shard
    rows = []
    for s in read_manifest(shard_dir)["shards"]:
        if s["split"] == "train":
            rows += open_shard(shard_dir / s["name"]).select(["doc_id", "url", "tokens"]).to_pylist()
    return [dict(r, text=decode(r["tokens"][:-1])) for r in rows]


def planted_test_file(path, sources, seed=0):
    """Passages of `sources` re-cased and re-punctuated (the normalization must see through that), between
    nonsense sentences that share no 8-gram with anything."""
    rng = random.Random(seed)
    parts = []
    for doc in sources:
        words = doc["text"].split()[:120]
        parts.append(" ".join(words).upper().replace(" ", " ,  "))
        parts.append(" ".join("".join(rng.choice("qxzjv") for _ in range(6)) for _ in range(150)) + ".")
    path.write_text("\n\n".join(parts))
    return path


def run(capsys, *argv):
    rc = shards_cli.main(["overlap", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_normalization_ignores_case_punctuation_and_spacing():
    a = text_grams(b"The quick brown fox jumps over the lazy dog near the river bank")
    b = text_grams("THE QUICK, brown\n\nfox \u2014 jumps over (the) lazy dog... near the river bank!".encode())
    assert len(a) == 6 and np.array_equal(a, b)
    assert not np.intersect1d(a, text_grams(b"the quick brown fox jumped over the lazy dog near the river")).size


def test_bloom_filter_has_no_false_negatives_and_its_design_rate():
    keys = mix64(np.arange(200_000, dtype=np.uint64))
    others = mix64(np.arange(200_000, 400_000, dtype=np.uint64))
    bloom = BloomFilter(len(keys), fpr=0.01)
    assert bloom.k == 7 and abs(bloom.m / 200_000 - 9.585) < 0.01   # -ln(0.01) / ln(2)^2 bits per key
    bloom.add(keys)
    assert bloom.contains(keys).all()
    measured = bloom.contains(others).mean()
    assert 0.007 < measured < 0.013 and abs(bloom.fpr() - 0.01) < 0.002
    # the paper's bound: 1e-8 at WebText's size
    bits, k = filter_size(9e9, 1e-8)
    assert k == 27 and 3.44e11 < bits < 3.46e11   # 43.1 GB
    bits16, _ = filter_size(9e9, 1e-8, k=16)      # fewer probes: a little more memory for the same rate
    assert 1.08 < bits16 / bits < 1.11 and (1 - math.exp(-16 * 9e9 / bits16)) ** 16 <= 1e-8
    fewer = BloomFilter(len(keys), fpr=0.01, k=4)
    fewer.add(keys)
    assert fewer.k == 4 and fewer.contains(keys).all() and 0.007 < fewer.contains(others).mean() < 0.013


def test_overlap_percentage_matches_the_reference(corpus, tmp_path, capsys):
    shard_dir, _ = corpus
    train = train_docs(shard_dir)
    test = planted_test_file(tmp_path / "planted.txt", train[3:6])
    clean = tmp_path / "clean.txt"
    clean.write_text("Colorless green ideas sleep furiously while zebras juggle marmalade under violet moons "
                     "and seventeen accordions argue about the price of fog.")
    train_set = {g for d in train for g in ref_grams(d["text"])}
    grams = ref_grams(test.read_text())
    expected = 100 * sum(g in train_set for g in grams) / len(grams)
    assert 20 < expected < 80   # a real mix of planted and novel text

    rc, out, err = run(capsys, shard_dir, "--against", test, clean, "--json", tmp_path / "o.json", "-q")
    assert rc == 0, err
    assert f"{test}: {expected:.2f}% of {len(grams):,} 8-grams in train" in out
    assert f"{clean}: 0.00% of" in out
    report = json.loads((tmp_path / "o.json").read_text())
    planted = report["tests"][0]
    assert planted["in_train"] == sum(g in train_set for g in grams) and planted["grams"] == len(grams)
    assert report["filter"]["k"] == 27 and report["filter"]["fpr"] < 1e-8
    assert report["train"]["grams"] == sum(len(ref_grams(d["text"])) for d in train)
    assert "GB/s" in out and "Bloom filter" in out


def all_docs(shard_dir):
    from core.shard_format import open_shard
    rows = []
    for s in read_manifest(shard_dir)["shards"]:
        rows += open_shard(shard_dir / s["name"]).select(["doc_id", "url", "tokens"]).to_pylist()
    return [dict(r, text=decode(r["tokens"][:-1])) for r in rows]


@pytest.mark.parametrize("min_grams", [1, 50])
def test_remove_drops_the_overlapping_documents_and_counts_them(min_grams, corpus, tmp_path, capsys):
    shard_dir, _ = corpus
    train = train_docs(shard_dir)
    victims = train[3:6]
    test = planted_test_file(tmp_path / "planted.txt", victims)
    test_set = set(ref_grams(test.read_text()))
    docs = all_docs(shard_dir)
    shared = {d["doc_id"]: sum(g in test_set for g in ref_grams(d["text"])) for d in docs}
    expected = {i for i, n in shared.items() if n >= min_grams}
    assert {d["doc_id"] for d in victims} <= expected   # each planted passage is 113 8-grams
    if min_grams == 1:
        assert len(expected) > 3   # pydoc topics share stock phrases: one 8-gram is a low bar
    else:
        assert expected == {d["doc_id"] for d in victims}

    out_dir = tmp_path / "clean"
    rc, out, err = run(capsys, shard_dir, "--against", test, "--remove", "--out", out_dir, "--min-grams", min_grams,
                       "-q")
    assert rc == 0, err
    before, after = read_manifest(shard_dir), read_manifest(out_dir)
    assert verify(out_dir) == []
    assert {d["doc_id"] for d in all_docs(out_dir)} == set(shared) - expected
    stage = after["stats"]["stages"]["decontaminate"]
    total = sum(t["docs"] for t in before["totals"].values())
    assert stage["dropped"] == {"test_overlap": len(expected)}
    assert stage["in"] == total and stage["out"] == total - len(expected) == sum(
        t["docs"] for t in after["totals"].values())
    drops = [d._asdict() for d in read_drops(str(out_dir))]
    assert sorted(d["url"] for d in drops) == sorted(d["url"] for d in docs if d["doc_id"] in expected)
    assert all(d["reason"] == "test_overlap" and d["stage"] == "decontaminate" for d in drops)
    assert f"dropped {len(expected)} " in out


@pytest.mark.parametrize("argv, says", [
    (["{dir}", "--against", "{tmp}/nope.txt"], "cannot read"),
    (["{dir}", "--against", "{file}", "--remove"], "--out"),
    (["{dir}", "--against", "{file}", "--fpr", "2"], "--fpr"),
    (["{dir}", "--against", "{file}", "--remove", "--out", "{dir}"], "new directory"),
])
def test_overlap_user_mistakes_exit_2(argv, says, corpus, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("some words")
    fill = dict(dir=corpus[0], tmp=tmp_path, file=tmp_path / "t.txt")
    rc, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert rc == 2 and err.startswith("error: ") and says in err and err.count("\n") == 1


def test_parallel_fill_builds_the_same_partitioned_filter(corpus, tmp_path, capsys):
    from pipeline.shards.overlap import build_train_filter_parallel, chunk_grams, shard_chunks

    class Bar:
        def update(self, n):
            pass

    shard_dir, _ = corpus
    entries = [s for s in read_manifest(shard_dir)["shards"] if s["split"] == "train"]
    parallel, built = build_train_filter_parallel(str(shard_dir), entries, 1e-8, Bar(), 0, workers=3)
    serial = BloomFilter(sum(e["tokens"] for e in entries), 1e-8, partitions=3)
    grams = 0
    for e in entries:
        for tokens, offsets, _ in shard_chunks(shard_dir / e["name"]):
            g = chunk_grams(tokens, offsets)[0]
            serial.add(g)
            grams += len(g)
    assert built["grams"] == grams and built["workers"] == 3
    assert np.array_equal(parallel.words, serial.words) and parallel.fill() > 0
    # and the command gives the same percentages with any number of workers
    test = planted_test_file(tmp_path / "planted.txt", train_docs(shard_dir)[3:6])
    outs = []
    for workers in ("1", "2"):
        rc, out, err = run(capsys, shard_dir, "--against", test, "--workers", workers, "-q")
        assert rc == 0, err
        outs.append([line for line in out.splitlines() if line.startswith(str(test))])
    assert outs[0] == outs[1] and outs[0]


def test_large_text_is_hashed_in_pieces_with_the_same_grams():
    text = " ".join(f"w{i % 977} x{i % 13}\n" for i in range(20_000)).encode()
    assert np.array_equal(text_grams(text, piece=1000), text_grams(text))
    assert len(text_grams(text)) == len(text.split()) - 7
