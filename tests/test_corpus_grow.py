"""A corpus that grows (#18): the demo web's dump split into two months; month 1 built, month 2 added with
`--add-to`. The addition fetches no link the corpus fetched, removes exact and near duplicates of the corpus's
documents (even a copy with more karma: an existing document is never removed), leaves the corpus's files as they
were, keeps what one build of both months keeps under the same rule, and commits through one atomic manifest."""
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from core.records import doc_id_for
from core.shard_format import open_shard, read_manifest, verify
from crawl.urls import normalize_url
from pipeline.demo.run import read_drops
from pipeline.demo.web import build_demo, write_dump
from webtext import main

ROOT = Path(__file__).resolve().parents[1]
SHIFT = 10**8          # month 2's submissions are moved this much later: every one of them after every month-1 one


def read_lines(path):
    with zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(path, "rb")) as r:
        return io.TextIOWrapper(r, encoding="utf-8", errors="surrogateescape").read().splitlines()


def split_months(demo, workdir):
    """Two dumps: month 2 holds the higher-karma near-duplicate (its copy is in month 1), the lower-karma exact
    copy, a repost of a month-1 article, and every other second submission; the rest is month 1."""
    near_best, near_copy = demo.planted["near_duplicate"]
    exact_best, exact_copy = demo.planted["exact_duplicate"]
    month1, month2, repost = [], [], None
    for i, line in enumerate(read_lines(demo.dump_path)):
        try:
            rec = json.loads(line)
            url, _ = rec["url"], rec["created_utc"] + rec["score"]
        except (ValueError, KeyError, TypeError):
            month1.append(line)
            continue
        if url == near_copy or url == exact_best:
            second = False
        elif url in (near_best, exact_copy):
            second = True
        else:
            second = i % 2 == 1
        if second:
            rec["created_utc"] += SHIFT
            month2.append(json.dumps(rec))
        else:
            month1.append(line)
            if repost is None and normalize_url(url) in demo.expected_kept_urls and url not in \
                    sum(demo.planted.values(), []):
                repost = dict(rec, created_utc=rec["created_utc"] + SHIFT, score=500, id="reposted")
                month2.append(json.dumps(repost))
    paths = []
    for n, lines in ((1, month1), (2, month2)):
        path = Path(workdir) / f"RS_month{n}.zst"
        write_dump(path, [l.encode("utf-8", "surrogateescape") for l in lines])
        paths.append(path)
    # every month-1 submission is older than every month-2 one: month 2 starts at the first of them
    return paths, min(json.loads(l)["created_utc"] for l in month2), repost["url"]


def docs_of(corpus):
    """doc_id -> sha256 of its tokens, over every shard the manifest lists (every generation)."""
    out = {}
    for s in read_manifest(corpus)["shards"]:
        t = open_shard(Path(corpus) / s["name"])
        for doc_id, tokens in zip(t.column("doc_id").to_pylist(), t.column("tokens").to_pylist()):
            assert doc_id not in out
            out[doc_id] = hashlib.sha256(repr(tokens).encode()).hexdigest()
    return out


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def args(inputs, proxy, *extra):
    return ["run", *sum((["--input", str(p)] for p in inputs), []), "--http-proxy", proxy, "--quiet",
            "--set", "fetch.min_delay=0.02", "--set", "shards.target_tokens=8000", "--set", "shards.val_fraction=0.1",
            *extra]


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grow")
    demo = build_demo(tmp / "web")
    (m1, m2), cutoff, repost = split_months(demo, tmp)
    corpus, single = tmp / "corpus", tmp / "single"
    with demo.web as web:
        assert main(args([m1], web.proxy_url, "--out", str(corpus))) == 0
        before = {p.name: sha(p) for p in (corpus / "data").glob("*.arrow")}
        manifest_before = read_manifest(corpus)
        mark = len(web.log)
        assert main(args([m2], web.proxy_url, "--add-to", str(corpus))) == 0
        fetched_by_addition = {f"http://{host}{path}" for _, _, host, path in web.log[mark:]}
        assert main(args([m1, m2], web.proxy_url, "--out", str(single),
                         "--set", f"dedup.prefer_first_seen_before={cutoff}")) == 0
    return dict(demo=demo, corpus=corpus, single=single, before=before, manifest_before=manifest_before,
                fetched=fetched_by_addition, months=(m1, m2), repost=repost, proxy=None)


def test_addition_equals_one_build_of_both_months(grown):
    assert docs_of(grown["corpus"]) == docs_of(grown["single"]) != {}


def test_duplicates_of_the_corpus_removed_and_old_documents_untouched(grown):
    corpus, demo = grown["corpus"], grown["demo"]
    near_best, near_copy = demo.planted["near_duplicate"]
    exact_best, exact_copy = demo.planted["exact_duplicate"]
    kept = docs_of(corpus)
    # the month-1 copies stay, though the near-duplicate added in month 2 has more karma (60 vs 9)
    assert doc_id_for(normalize_url(near_copy)) in kept and doc_id_for(normalize_url(near_best)) not in kept
    assert doc_id_for(normalize_url(exact_best)) in kept and doc_id_for(normalize_url(exact_copy)) not in kept
    drops = read_drops(str(corpus / "_generations" / "00001"))
    assert drops[normalize_url(near_best)] == "dedup/near_duplicate"
    assert drops[normalize_url(exact_copy)] == "dedup/exact_duplicate"
    # generation 0's files are byte for byte what they were; the manifest lists both generations
    assert {p: sha(corpus / "data" / p) for p in grown["before"]} == grown["before"]
    manifest = read_manifest(corpus)
    assert [g["generation"] for g in manifest["generations"]] == [0, 1]
    old = {s["name"] for s in grown["manifest_before"]["shards"]}
    assert old < {s["name"] for s in manifest["shards"]}
    assert all("-g00001-" in s["name"] for s in manifest["shards"] if s["name"] not in old)
    assert manifest["totals"]["train"]["docs"] + manifest["totals"]["val"]["docs"] == len(kept)
    assert verify(corpus) == []


def test_links_the_corpus_fetched_are_not_fetched_again(grown):
    repost = normalize_url(grown["repost"])
    assert repost not in grown["fetched"]
    stats = json.loads((grown["corpus"] / "_generations" / "00001" / "stats.json").read_text())
    assert stats["stages"]["fetch"]["dropped"]["already_in_corpus"] >= 1
    assert read_drops(str(grown["corpus"] / "_generations" / "00001"))[repost] == "fetch/already_in_corpus"
    for s in stats["stages"].values():
        assert s["in"] == s["out"] + sum(s["dropped"].values())


def test_the_same_addition_again_adds_nothing(grown, capsys):
    m2 = grown["months"][1]
    before = (grown["corpus"] / "manifest.json").read_bytes()
    assert main(args([m2], "http://127.0.0.1:9", "--add-to", str(grown["corpus"]))) == 0
    assert "already holds this job as generation 1" in capsys.readouterr().out
    assert (grown["corpus"] / "manifest.json").read_bytes() == before


def test_another_dedup_setting_is_refused_in_one_line(grown, capsys):
    rc = main(args([grown["months"][1]], "http://127.0.0.1:9", "--add-to", str(grown["corpus"]),
                   "--set", "dedup.threshold=0.7"))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: the corpus was deduplicated with other settings (threshold")
    assert len(err.strip().splitlines()) == 1


def test_manifest_is_atomic_under_sigkill(grown, tmp_path):
    """Kill additions at random moments: the manifest is always the old one or the complete new one, and every
    shard it lists is whole; the rerun of the same command commits the generation. The corpus has no index at
    first (an older webtext's): the addition builds it from the payload files."""
    import shutil
    corpus = tmp_path / "corpus"
    shutil.copytree(grown["corpus"], corpus, ignore=shutil.ignore_patterns("_generations"))
    manifest = read_manifest(corpus)   # back to generation 0 only: as before the addition
    gen0 = [s for s in manifest["shards"] if not s.get("generation")]
    for s in manifest["shards"]:
        if s.get("generation"):
            (corpus / s["name"]).unlink()
    from core.shard_format import ShardInfo, write_manifest
    write_manifest(corpus, [ShardInfo(*(s[k] for k in ShardInfo._fields[:-1])) for s in gen0], manifest["config"],
                   manifest["stats"])
    shutil.rmtree(corpus / "_index")   # and as if built by a webtext without indexes: made from _payloads/ once
    old = (corpus / "manifest.json").read_bytes()
    demo = build_demo(tmp_path / "web")   # the same pages (seed 0)
    rng = random.Random(7)
    with demo.web as web:
        cmd = [sys.executable, "-m", "webtext", *args([grown["months"][1]], web.proxy_url, "--add-to", str(corpus))]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # killed while the pipeline writes the generation's payloads, and between its end and the commit
        for trigger, spread in (("_payloads", 0.5), ("manifest.json", 0.15)):
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            deadline = time.time() + 90
            while proc.poll() is None and time.time() < deadline and \
                    not (corpus / "_generations" / "00001" / trigger).exists():
                time.sleep(0.02)
            time.sleep(rng.uniform(0, spread))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            now = (corpus / "manifest.json").read_bytes()
            assert now == old or [g["generation"] for g in read_manifest(corpus)["generations"]] == [0, 1]
            listed = read_manifest(corpus)["shards"]
            assert all(sha(corpus / s["name"]) == s["sha256"] for s in listed)
        assert main(args([grown["months"][1]], web.proxy_url, "--add-to", str(corpus))) == 0
    assert docs_of(corpus) == docs_of(grown["corpus"])
    assert verify(corpus) == []


def test_trainer_and_card_see_one_corpus(grown):
    pytest.importorskip("torch")
    from train.data import TokenWindows
    corpus = grown["corpus"]
    totals = read_manifest(corpus)["totals"]
    for split in ("train", "val"):
        assert TokenWindows(corpus, split, block_size=16).split_tokens == totals[split]["tokens"] > 0
    out = corpus.parent / "all.jsonl"
    assert main(["shards", "export", str(corpus), "--format", "jsonl", "--out", str(out), "--split", "all",
                 "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == totals["train"]["docs"] + totals["val"]["docs"]
    card = (corpus / "README.md").read_text()
    assert "## Generations" in card and f"| 1 | `{grown['months'][1]}` |" in card
    assert f"{totals['train']['docs'] + totals['val']['docs']:,} English web documents" in card


def test_a_plain_rerun_into_a_grown_corpus_is_refused(grown, capsys):
    rc = main(args([grown["months"][0]], "http://127.0.0.1:9", "--out", str(grown["corpus"])))
    assert rc == 2 and "is a corpus grown by --add-to (2 generations)" in capsys.readouterr().err
