"""`webtext shards dedup-against DIR OTHER` (#18): two corpora of real prose with their sketch indexes (written by
dedup/index.py as `webtext run` writes them); DIR holds an exact copy (re-cased, re-spaced) and a near copy (a few
words changed) of OTHER's documents, and one document OTHER's dedup dropped. Every reported pair is checked
against a brute-force comparison of all pairs; --remove writes a verified copy without them."""
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from core.shard_format import ShardInfo, open_shard, read_manifest, shard_name, verify, write_manifest
from dedup import index as sketch_index
from dedup.config import DedupConfig
from dedup.minhash import band_keys, banding, estimated_jaccard, sig_array, sketch
from pipeline.drops import read_drops
from pipeline.shards import cli as shards_cli
from test_shards import prose_corpus, tokenized, write_dir


class Doc:
    def __init__(self, d):
        self.__dict__.update(d, fingerprint="", sig=b"")


def url_doc(url, text, i):
    doc_id = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
    return dict(doc_id=doc_id, url=url, text=text, karma=5 + i, subreddits=("test",), created_utc=1_500_000_000 + i)


def build(out, docs, dropped=(), cfg=DedupConfig()):
    """A shard directory of `docs` and its generation-0 sketch index (dropped: in the index with kept = false)."""
    write_dir(out, [tokenized(d) for d in docs])
    rows = []
    for d, kept in [(d, True) for d in docs] + [(d, False) for d in dropped]:
        sk = sketch(Doc(d), cfg)
        rows.append((d["doc_id"], d["karma"], sk.fingerprint, sk.sig, kept))
    sketch_index.write(sketch_index.generation_dir(str(out), 0), rows, cfg)
    return out


def edit(text, every=60):
    """Change one word in every `every` (a near copy: estimated Jaccard ~0.9, not 1)."""
    words = text.split(" ")
    return " ".join("CHANGED" if i % every == every // 2 else w for i, w in enumerate(words))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("against")
    topics = prose_corpus()
    other_docs = topics[:30]
    exact_src, near_src = max(other_docs[:15], key=lambda d: len(d["text"])), \
        max(other_docs[15:], key=lambda d: len(d["text"]))
    exact_copy = url_doc("https://mirror.example.net/exact", "  " + re.sub(" ", "  ", exact_src["text"].upper()), 1)
    near_copy = url_doc("https://mirror.example.net/near", edit(near_src["text"]), 2)
    dropped_src = topics[40]          # in DIR; in OTHER only as a document its dedup removed
    dropped_copy = url_doc("https://other.example.org/dropped", dropped_src["text"], 3)
    dir_docs = topics[30:] + [exact_copy, near_copy]
    other = build(tmp / "other", other_docs, dropped=[dropped_copy])
    data = build(tmp / "dir", dir_docs)
    return dict(tmp=tmp, dir=data, other=other, dir_docs=dir_docs, other_docs=other_docs,
                exact=(exact_copy, exact_src), near=(near_copy, near_src), dropped=(dropped_src, dropped_copy))


def brute_force(dir_docs, other_docs, cfg=DedupConfig()):
    """Every (DIR doc_id, OTHER doc_id) -> kind, comparing all pairs (no index): equal fingerprints, or a shared
    band and estimated Jaccard >= threshold."""
    bands, rows = banding(cfg)
    out = {}
    for a in dir_docs:
        ska = sketch(Doc(a), cfg)
        for b in other_docs:
            skb = sketch(Doc(b), cfg)
            if ska.fingerprint == skb.fingerprint:
                out[a["doc_id"], b["doc_id"]] = "exact"
            elif set(band_keys(sig_array(ska.sig), bands, rows)) & set(band_keys(sig_array(skb.sig), bands, rows)) \
                    and estimated_jaccard(sig_array(ska.sig), sig_array(skb.sig)) >= cfg.threshold:
                out[a["doc_id"], b["doc_id"]] = "near"
    return out


def run(capsys, *argv):
    rc = shards_cli.main(["dedup-against", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def tree_bytes(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*")) if p.is_file()}


def test_reports_the_exact_and_near_copies_and_nothing_else(corpora, tmp_path, capsys):
    (exact_copy, exact_src), (near_copy, near_src) = corpora["exact"], corpora["near"]
    expected = brute_force(corpora["dir_docs"], corpora["other_docs"])
    assert expected == {(exact_copy["doc_id"], exact_src["doc_id"]): "exact",
                        (near_copy["doc_id"], near_src["doc_id"]): "near"}     # the prose has no other pairs
    rc, out, err = run(capsys, corpora["dir"], corpora["other"], "--json", tmp_path / "r.json", "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    pairs = {(p["doc_id"], p["other_doc_id"]): p["kind"] for p in report["pairs"]}
    assert pairs == expected
    by_id = {p["doc_id"]: p for p in report["pairs"]}
    assert by_id[exact_copy["doc_id"]]["url"] == exact_copy["url"] and by_id[exact_copy["doc_id"]]["similarity"] == 1
    near_sim = by_id[near_copy["doc_id"]]["similarity"]
    assert 0.8 <= near_sim < 1
    assert near_sim == pytest.approx(estimated_jaccard(sig_array(sketch(Doc(near_copy)).sig),
                                                       sig_array(sketch(Doc(near_src)).sig)))
    manifest = read_manifest(corpora["dir"])
    tokens = {d["doc_id"]: len(tokenized(d).tokens) for d in corpora["dir_docs"]}
    counts = report["counts"]
    assert counts["exact"]["all"]["docs"] == counts["near"]["all"]["docs"] == 1
    assert counts["either"]["all"]["tokens"] == tokens[exact_copy["doc_id"]] + tokens[near_copy["doc_id"]]
    total = sum(t["docs"] for t in manifest["totals"].values())
    assert counts["either"]["all"]["share_docs"] == pytest.approx(2 / total)
    assert sum(counts["either"][s]["docs"] for s in ("train", "val")) == 2
    assert report["other_documents"] == "kept" and report["threshold"] == 0.8
    assert "exact" in out and "near" in out and f"{2 / total:.2%}"[:-1] in out.replace(" ", "")


def test_include_dropped_counts_what_other_removed(corpora, tmp_path, capsys):
    dropped_src, dropped_copy = corpora["dropped"]
    rc, _, err = run(capsys, corpora["dir"], corpora["other"], "--include-dropped", "--json", tmp_path / "r.json",
                     "-q")
    assert rc == 0, err
    pairs = {(p["doc_id"], p["other_doc_id"]): p["kind"] for p in json.loads((tmp_path / "r.json").read_text())["pairs"]}
    assert pairs[dropped_src["doc_id"], dropped_copy["doc_id"]] == "exact" and len(pairs) == 3


def test_a_higher_threshold_leaves_the_near_copy_out(corpora, tmp_path, capsys):
    near_copy, _ = corpora["near"]
    rc, _, _ = run(capsys, corpora["dir"], corpora["other"], "--threshold", "0.99", "--json", tmp_path / "r.json")
    assert rc == 0
    ids = {p["doc_id"] for p in json.loads((tmp_path / "r.json").read_text())["pairs"]}
    assert near_copy["doc_id"] not in ids and corpora["exact"][0]["doc_id"] in ids


def test_remove_writes_a_verified_copy_without_them_and_leaves_dir_alone(corpora, tmp_path, capsys):
    before = tree_bytes(corpora["dir"])
    out_dir = tmp_path / "clean"
    rc, out, err = run(capsys, corpora["dir"], corpora["other"], "--remove", "--out", out_dir, "-q")
    assert rc == 0, err
    assert tree_bytes(corpora["dir"]) == before
    assert verify(out_dir) == []
    gone = {corpora["exact"][0]["doc_id"], corpora["near"][0]["doc_id"]}
    kept = set()
    for s in read_manifest(out_dir)["shards"]:
        kept |= set(open_shard(out_dir / s["name"]).column("doc_id").to_pylist())
    assert kept == {d["doc_id"] for d in corpora["dir_docs"]} - gone
    stage = read_manifest(out_dir)["stats"]["stages"]["decontaminate"]
    n = len(corpora["dir_docs"])
    assert stage["dropped"] == {"exact_duplicate_of_other": 1, "near_duplicate_of_other": 1}
    assert stage["in"] == n and stage["out"] == n - 2
    drops = {d.reason: d for d in read_drops(str(out_dir))}
    assert drops["exact_duplicate_of_other"].url == corpora["exact"][0]["url"]
    assert corpora["exact"][1]["doc_id"] in drops["exact_duplicate_of_other"].detail
    assert drops["near_duplicate_of_other"].url == corpora["near"][0]["url"]
    assert all(d.stage == "decontaminate" for d in drops.values())
    assert "dropped 1 under reason exact_duplicate_of_other, 1 under reason near_duplicate_of_other" in out


def test_params_mismatch_and_missing_index_are_one_line_errors(corpora, tmp_path, capsys):
    other7 = build(tmp_path / "other7", corpora["other_docs"], cfg=DedupConfig(threshold=0.7))
    rc, out, err = run(capsys, corpora["dir"], other7)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "threshold 0.8 (DIR) vs 0.7" in err
    bare = Path(shutil.copytree(corpora["other"], tmp_path / "bare"))
    shutil.rmtree(bare / "_index")
    rc, out, err = run(capsys, corpora["dir"], bare)
    assert rc == 2 and err.count("\n") == 1 and "no sketch index" in err and f"webtext shards index {bare}" in err
    rc, out, err = run(capsys, bare, corpora["other"])
    assert rc == 2 and err.count("\n") == 1 and "DIR" in err and "no sketch index" in err


@pytest.mark.parametrize("argv, says", [
    (["{dir}", "{other}", "--remove"], "--out"),
    (["{dir}", "{other}", "--out", "{tmp}/x"], "--remove"),
    (["{dir}", "{dir}"], "itself"),
    (["{dir}", "{other}", "--threshold", "1.5"], "--threshold"),
    (["{dir}", "{other}", "--remove", "--out", "{dir}"], "new directory"),
    (["{dir}", "{tmp}/nope"], "does not exist"),
])
def test_user_mistakes_exit_2(argv, says, corpora, tmp_path, capsys):
    fill = dict(dir=corpora["dir"], other=corpora["other"], tmp=tmp_path)
    rc, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert rc == 2 and err.startswith("error: ") and says in err and err.count("\n") == 1


def pair_ids(path):
    return {(p["doc_id"], p["other_doc_id"]): p["kind"] for p in json.loads(Path(path).read_text())["pairs"]}


def expected_pairs(corpora):
    return {(corpora["exact"][0]["doc_id"], corpora["exact"][1]["doc_id"]): "exact",
            (corpora["near"][0]["doc_id"], corpora["near"][1]["doc_id"]): "near"}


def test_small_chunks_find_the_same_pairs(corpora, tmp_path, capsys, monkeypatch):
    """Several lookups and verification batches of one pair find what one chunk finds."""
    from pipeline.shards import against
    monkeypatch.setattr(against, "CHUNK", 7)
    monkeypatch.setattr(against, "PAIRS", 1)
    rc, _, err = run(capsys, corpora["dir"], corpora["other"], "--json", tmp_path / "r.json", "-q")
    assert rc == 0, err
    assert pair_ids(tmp_path / "r.json") == expected_pairs(corpora)
    assert len(json.loads((tmp_path / "r.json").read_text())["pairs"]) == 2     # a pair sharing 2+ bands: once


def grow(tmp, first, second):
    """A corpus of two generations as `webtext run --add-to` lays it out: `second`'s shards renamed into
    data/*-g00001-*, its index as _index/00001, both listed in one manifest."""
    corpus, added = build(tmp / "grown", first), build(tmp / "added", second)
    m0, m1 = read_manifest(corpus), read_manifest(added)
    infos = [ShardInfo(*(e[k] for k in ShardInfo._fields[:-1])) for e in m0["shards"]]
    for e in m1["shards"]:
        name = shard_name(e["split"], e["index"], e["num_shards"], generation=1)
        (added / e["name"]).rename(corpus / name)
        infos.append(ShardInfo(*(dict(e, name=name)[k] for k in ShardInfo._fields[:-1]), generation=1))
    shutil.copytree(sketch_index.generation_dir(str(added), 0), sketch_index.generation_dir(str(corpus), 1))
    write_manifest(str(corpus), infos, m0["config"], {}, [{"generation": 0, "job": {}}, {"generation": 1, "job": {}}])
    assert verify(corpus) == []
    return corpus


def test_a_grown_dir_is_searched_in_every_generation_and_copied_flat(corpora, tmp_path, capsys):
    docs = corpora["dir_docs"]
    corpus = grow(tmp_path, docs[:-3], docs[-3:])        # the planted copies are in generation 1
    rc, _, err = run(capsys, corpus, corpora["other"], "--json", tmp_path / "r.json", "--remove", "--out",
                     tmp_path / "flat", "-q")
    assert rc == 0, err
    assert pair_ids(tmp_path / "r.json") == expected_pairs(corpora)
    flat = read_manifest(tmp_path / "flat")
    assert verify(tmp_path / "flat") == [] and "generations" not in flat
    assert all("-g0" not in s["name"] for s in flat["shards"])
    kept = set()
    for s in flat["shards"]:
        kept |= set(open_shard(tmp_path / "flat" / s["name"]).column("doc_id").to_pylist())
    assert kept == {d["doc_id"] for d in docs} - {k[0] for k in expected_pairs(corpora)}


def test_shards_index_rebuilds_the_index_from_the_shards(corpora, tmp_path, capsys):
    """A corpus without an index (an older webtext): `shards index` writes the one the run wrote (kept rows)."""
    bare = Path(shutil.copytree(corpora["other"], tmp_path / "bare"))
    shutil.rmtree(bare / "_index")
    rc = shards_cli.main(["index", str(bare), "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "indexed 30 documents" in out
    rebuilt = sketch_index.SketchIndex(sketch_index.generation_dir(str(bare), 0)).table
    original = sketch_index.SketchIndex(sketch_index.generation_dir(str(corpora["other"]), 0)).table
    original = original.filter(original.column("kept"))
    # rows are in the order they were written (index.write streams): compare them by doc_id
    assert rebuilt.sort_by("doc_id").equals(original.sort_by("doc_id").replace_schema_metadata(rebuilt.schema.metadata))
    assert rebuilt.schema.metadata == original.schema.metadata
    rc, _, err = run(capsys, corpora["dir"], bare, "--json", tmp_path / "r.json", "-q")
    assert rc == 0, err
    assert pair_ids(tmp_path / "r.json") == expected_pairs(corpora)
    assert shards_cli.main(["index", str(bare)]) == 0 and "has its index already" in capsys.readouterr().out


def test_overlap_remove_copies_a_grown_corpus_flat_too(corpora, tmp_path, capsys):
    """The rewrite both --remove commands share: generation shards used to be rewritten under generation 0's names
    (train-00000-of-00001 twice), so the copy lost documents and failed verify."""
    docs = corpora["dir_docs"]
    corpus = grow(tmp_path, docs[:-3], docs[-3:])
    test = tmp_path / "test.txt"
    test.write_text(docs[0]["text"])
    rc = shards_cli.main(["overlap", str(corpus), "--against", str(test), "--remove", "--out", str(tmp_path / "c"),
                          "--min-grams", "50", "-q"])
    assert rc == 0, capsys.readouterr().err
    assert verify(tmp_path / "c") == []
    kept = set()
    for s in read_manifest(tmp_path / "c")["shards"]:
        kept |= set(open_shard(tmp_path / "c" / s["name"]).column("doc_id").to_pylist())
    stage = read_manifest(tmp_path / "c")["stats"]["stages"]["decontaminate"]
    assert docs[0]["doc_id"] not in kept and kept < {d["doc_id"] for d in docs}     # no doc lost to a name clash
    assert stage["in"] == len(docs) and stage["out"] == len(kept) == len(docs) - stage["dropped"]["test_overlap"]
