"""Dump reading at Pushshift scale: lines judged where they are parsed (same links and counts as judging
Submissions one by one), lines a record cannot hold counted as malformed_line, memory bounded whatever the input,
and _drops/ capped per reason next to shards that pyarrow.dataset can read."""
import gzip
import json
import random
import tracemalloc

import apache_beam as beam
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to

import crawl.links as links_mod
from conftest import beam_pipeline, counters
from core.records import Drop, Submission
from crawl.links import HarvestLinks, LinkRules, judge_url, normalize_url, url_drop_reason
from crawl.sources.dumps import iter_file, iter_line_batches, iter_lines
from crawl.sources.reddit import submission_from_item
from pipeline.config import load_config
from pipeline.drops import DROPS_DIR, WriteDrops, read_drops
from pipeline.options import DEFAULT_RUNNER
from pipeline.runner import run
from apache_beam.options.pipeline_options import PipelineOptions

GOOD = {"id": "a1", "url": "http://example.com/x", "score": 5, "is_self": False, "over_18": False,
        "subreddit": "news", "created_utc": 1120000000}


def zst(path, lines):
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(l + b"\n" for l in lines)))
    return path


def synthetic_rows(n, seed=0):
    """Pushshift-like rows: low scores, self posts, NSFW, media and Wikipedia links, reposts with utm_ tails."""
    rng = random.Random(seed)
    rows, articles = [], []
    for i in range(n):
        u = rng.random()
        if articles and u < 0.15:
            url = rng.choice(articles) + ("?utm_source=reddit" if rng.random() < 0.3 else "")
        elif u < 0.35:
            url = f"https://{rng.choice(['i.imgur.com', 'www.youtube.com', 'en.wikipedia.org'])}/x{i}.jpg"
        elif u < 0.40:
            url = rng.choice(["ftp://x.org/a", "http://Example.COM:80/a/../b", "http://x.com/a b", "nope",
                              f"http://www.site{i % 7}.com/f{i}.pdf", f"http://xn--bcher-kva.example/{i}"])
        else:
            url = f"http://www.site{rng.randrange(50)}.com/2016/story-{i}" + rng.choice(["", ".html", "/"])
            articles.append(url.split("?")[0])
        rows.append({"id": f"s{i}", "url": url, "score": rng.choice([0, 1, 1, 2, 3, 5, 40]),
                     "is_self": rng.random() < 0.3, "over_18": rng.random() < 0.05,
                     "subreddit": rng.choice(["news", "science", "pics"]), "created_utc": 1400000000 + i})
    return rows


# ------------------------------------------------------------------------------------- judged where parsed
URLS = ["http://a.com", "http://a.com/", "https://www.a.com/x/y.html", "http://A.com/x", "http://a.com:80/x",
        "http://a.com:8080/x", "http://u:p@a.com/x", "http://a.com/x y", " http://a.com/x ", "http://a.com/./x",
        "http://a.com/a/../b", "http://a.com/.well-known/x", "http://a.com/%7Euser", "http://a.com/x?b=2&a=1",
        "http://a.com/x?utm_source=r", "http://a.com/x#frag", "http://a.com./x", "http://bücher.de/x",
        "http://i.imgur.com/x.jpg", "http://imgur.com/a b", "https://en.wikipedia.org/wiki/X",
        "http://en.m.wikipedia.org/wiki/Y?a=1", "http://a.com/x.PDF", "http://a.com/x.pdf?dl=1", "ftp://a.com/x",
        "http://", "http://[::1]/x", "http://a.com/x;p", "http://a-b.c-d.com/~x/_y-z.htm", "http://a..b/x",
        "http://a.com/x\t", "HTTP://a.com/x", "http://a.com//x//", "http://youtube.com?v=1", "http://a.com/x/.."]


def slow_judge(url, rules):
    norm = normalize_url(url)
    return ("invalid_url", None) if norm is None else (url_drop_reason(norm, rules), norm)


@pytest.mark.parametrize("url", URLS)
def test_judge_url_is_normalize_plus_rules(url):
    reason, norm = judge_url(url, LinkRules())
    expected_reason, expected_norm = slow_judge(url, LinkRules())
    assert reason == expected_reason
    if reason is None:
        assert norm == expected_norm


def test_judge_url_on_real_months(corpus):
    import lzma
    rules = LinkRules()
    for month in ("RS_v2_2005-06", "RS_v2_2005-07"):
        with lzma.open(corpus / "reddit" / f"{month}.xz") as f:
            for line in f:
                url = json.loads(line)["url"]
                reason, norm = judge_url(url, rules)
                assert (reason, norm if reason is None else None) == \
                    (lambda r, n: (r, n if r is None else None))(*slow_judge(url, rules)), url


COLLECTED = {}   # FnApiRunner runs in this process: a module global collects a PCollection


def _collect(x, tag):
    COLLECTED.setdefault(tag, []).append(x)


def collect(pcoll, tag):
    COLLECTED[tag] = []
    _ = pcoll | f"Collect{tag}" >> beam.Map(_collect, tag=tag)


@pytest.mark.parametrize("aggregate", ["max", "sum"])
def test_reading_inside_harvest_gives_the_same_links_and_counts(tmp_path, monkeypatch, aggregate):
    rows = synthetic_rows(3000)
    lines = [json.dumps(r).encode() for r in rows] + [b'{"url": "http://x.com/", "score": 1e400}', b"junk"]
    half = len(lines) // 2
    files = [zst(tmp_path / "RS_a.zst", lines[:half]), zst(tmp_path / "RS_b.zst", lines[half:])]  # URLs in both
    monkeypatch.setattr(links_mod, "FLUSH_URLS", 50)   # many partial batches per file, merged downstream
    rules = LinkRules(aggregate=aggregate, created_before=1400002900)

    # expected: Submissions judged one at a time (the per-element path the Reddit source uses)
    subs = [s for f in files for s in iter_file(open(f, "rb"), str(f)) if isinstance(s, Submission)]
    p = beam_pipeline()
    collect((p | beam.Create(subs) | HarvestLinks(rules))["links"], "expected")
    c_exp = counters(p.run())

    p = beam_pipeline()
    collect((p | HarvestLinks(rules, dumps=[str(f) for f in files], examples=5))["links"], "got")
    c = counters(p.run())
    got, expected = sorted(COLLECTED["got"]), sorted(COLLECTED["expected"])
    assert got == expected and len(got) > 100 and any(link.submissions > 1 for link in got)
    assert c["source.in"] == len(lines) and c["source.drop.malformed_line"] == 2
    assert c["source.out"] == c["submissions.in"] == len(subs)
    for key in set(c_exp) | set(c):
        if key.startswith(("submissions.", "links.")):
            assert c.get(key) == c_exp.get(key), key
    for stage in ("source", "submissions", "links"):
        assert c[f"{stage}.in"] == c.get(f"{stage}.out", 0) + sum(
            v for k, v in c.items() if k.startswith(f"{stage}.drop."))


# ------------------------------------------------------------------------------------- robust reading
@pytest.mark.parametrize("bad", [
    b'{"url": "http://x.com/a", "score": 1e400, "created_utc": 1}',
    b'{"url": "http://x.com/a", "score": 10' + b"0" * 400 + b', "created_utc": 1}',
    b'{"url": "http://x.com/a", "score": 5, "created_utc": 1e400}',
    b'{"url": "http://x.com/a", "score": 5, "created_utc": NaN}',
    b'{"url": "http://x.com/a", "score": 5, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    b'{"url": "http://x.com/a", "score": true}',
    b'{"url": ["http://x.com/a"], "score": 5}',
])
def test_a_line_a_record_cannot_hold_is_malformed(tmp_path, bad):
    path = zst(tmp_path / "RS_bad.zst", [json.dumps(GOOD).encode(), bad, json.dumps(dict(GOOD, id="b")).encode()])
    items = list(iter_file(open(path, "rb"), str(path)))
    assert [type(i) for i in items] == [Submission, Drop, Submission]
    assert items[1].reason == "malformed_line"
    p = beam_pipeline()
    out = p | HarvestLinks(LinkRules(), dumps=[str(path)])
    assert_that(out["links"] | beam.Map(lambda l: l.submissions), equal_to([2]))
    c = counters(p.run())
    assert c["source.in"] == 3 and c["source.drop.malformed_line"] == 1 and c["links.out"] == 1


@pytest.mark.parametrize("score", [float("inf"), 1e400, 10 ** 30, "1e400"])
def test_reddit_item_with_an_impossible_score_is_malformed(score):
    item = dict(GOOD, score=score, created_utc=1500000000)
    d = submission_from_item(item)
    assert isinstance(d, Drop) and d.reason == "malformed_item"


def test_reddit_items_with_lone_surrogates_are_dropped_and_listed(tmp_path):
    """The API's JSON can hold the same escapes: the item is a malformed_item, and _drops/ still writes it."""
    base = dict(GOOD, created_utc=1500000000)
    items = [dict(base, url="http://example.com/\ud800"), dict(base, subreddit="x\udc00"), dict(base, id="\ud800"),
             dict(base, url="http://example.com/\ud800", score=None)]
    drops = [submission_from_item(item) for item in items]
    assert all(isinstance(d, Drop) and d.reason == "malformed_item" for d in drops)
    assert isinstance(submission_from_item(dict(base, title="\ud800")), Submission)
    p = beam_pipeline()
    named = Drop("source", "malformed_line", "", "RS_\udcff.zst:1: not JSON")   # a file name's undecodable byte
    _ = p | beam.Create(drops + [named]) | WriteDrops(str(tmp_path))
    p.run().wait_until_finish()
    assert sorted(read_drops(str(tmp_path))) == sorted(drops + [named])


def test_an_endless_line_is_skipped_in_bounded_memory(tmp_path):
    # 100 MB of one line without a newline, in a tiny zstd frame (a decompression bomb for a reader that
    # decompresses whole frames or reads whole lines), between good lines.
    huge = b'{"url": "http://x.com/' + b"a" * (100 << 20)
    path = zst(tmp_path / "RS_long.zst", [json.dumps(GOOD).encode(), huge, json.dumps(dict(GOOD, id="c")).encode()])
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    items = list(iter_file(open(path, "rb"), str(path)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [type(i) for i in items] == [Submission, Drop, Submission]
    assert "longer than" in items[1].detail
    assert peak < 40 << 20, f"peak {peak >> 20} MiB while reading past a 100 MiB line"


def test_line_splitting_across_chunks():
    lines = [b"a" * n for n in (0, 1, 5, 2000, 9000, 3, 7000, 1)]
    data = b"\n".join(lines)
    for size in (1, 7, 1000, 4096, len(data)):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        got = list(iter_lines(chunks, max_line=5000))
        assert got == [l if len(l) <= 5000 else None for l in lines], size
    # a long line that ends exactly where a chunk ends, then more lines
    assert list(iter_lines([b"x" * 10, b"\nab\n", b"cd"], max_line=5)) == [None, b"ab", b"cd"]
    assert sum(len(b) for b in iter_line_batches([b"x" * 10] * 1000 + [b"\nz"], max_line=5)) == 2


# ------------------------------------------------------------------------------------- _drops/
def test_drops_capped_per_reason_deterministic_and_beside_a_dataset(tmp_path):
    shard = tmp_path / "train-00000-of-00001.arrow"
    table = pa.table({"url": ["http://a.com/"], "tokens": [[1, 2]]})
    with pa.OSFile(str(shard), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    drops = [Drop("submissions", "self_post", f"http://r.com/{i}") for i in range(5000)] + \
            [Drop("fetch", "http_4xx", f"http://b.com/{i}", "404") for i in range(7)]
    kept = []
    for order in (drops, drops[::-1]):
        p = beam_pipeline()
        _ = p | beam.Create(order) | WriteDrops(str(tmp_path), per_reason=300)
        p.run().wait_until_finish()
        kept.append(sorted(read_drops(str(tmp_path))))
        paths = list((tmp_path / DROPS_DIR).glob("*.jsonl.gz"))
        assert paths and all(gzip.open(p_).read() for p_ in paths)
        for p_ in paths:
            p_.unlink()
        p = beam_pipeline()
    assert kept[0] == kept[1]
    by = {}
    for d in kept[0]:
        by[d.reason] = by.get(d.reason, 0) + 1
    assert by == {"self_post": 300, "http_4xx": 7}
    p = beam_pipeline()
    _ = p | beam.Create(drops) | WriteDrops(str(tmp_path), per_reason=300)
    p.run().wait_until_finish()
    assert ds.dataset(str(tmp_path), format="ipc").to_table().num_rows == 1   # _drops/ is skipped


# Valid JSON whose strings UTF-8 cannot hold (lone surrogate escapes): malformed where we keep the string, harmless
# in a field we never read. json.dumps writes "\ud800" escapes for them, as Pushshift's writer did.
SURROGATES = [dict(GOOD, id="u1", url="http://example.com/\ud800"), dict(GOOD, id="u2", subreddit="news\udfff"),
              dict(GOOD, id="u3\udc00"), dict(GOOD, id=None, name="t3_\ud83d", url="http://example.com/n"),
              dict(GOOD, id="u5", url="http://\ud800.example.com/")]
HARMLESS = [dict(GOOD, id="h1", url="http://example.com/h1", title="\ud800", permalink="/r/x/\udc00",
                 domain="\ud800.com"), dict(GOOD, id="h2", url="http://example.com/h2", title="ok \ud83d\ude00")]


def test_run_stops_after_links_with_stats_and_small_drops(tmp_path):
    rows = synthetic_rows(20000, seed=3)
    lines = [json.dumps(dict(r, title="t " * 20, author="someone")).encode() for r in rows]
    for i, bad in enumerate(SURROGATES + HARMLESS):   # spread among the good lines
        lines.insert(1000 * i + 7, json.dumps(bad).encode())
    dump = zst(tmp_path / "RS_s.zst", lines)
    # and a second month whose second zstd frame is damaged: its first frame's 3 lines are kept
    frame = zstandard.ZstdCompressor().compress(b"".join(json.dumps(dict(GOOD, id=f"d{i}")).encode() + b"\n"
                                                         for i in range(3)))
    damaged = tmp_path / "RS_damaged.zst"
    damaged.write_bytes(frame + b"\x28\xb5\x2f\xfd" + b"\xff" * 64)
    cfg = load_config(None, {"run": {"inputs": [str(dump), str(damaged)], "stop_after": "links", "quiet": True,
                                     "drops_per_reason": 100}})
    stats = run(cfg, str(tmp_path / "out"), PipelineOptions([f"--runner={DEFAULT_RUNNER}"]), echo=lambda *a: None)
    assert stats["unbalanced"] == []
    st = stats["stages"]
    assert st["source"]["in"] == len(lines) + 3 + 1 and st["links"]["out"] > 0 and st["fetch"]["in"] == 0
    assert st["source"]["dropped"] == {"malformed_line": len(SURROGATES), "corrupt_file": 1}
    assert stats["metrics_vs_data"] == []   # _drops/ accounts for the same drops
    assert st["source"]["out"] == 20000 + len(HARMLESS) + 3
    written = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert [d.split(":")[0] for d in written["damaged_inputs"]] == [f"{damaged} after line 3"]
    assert f"frame 2 (at compressed byte {len(frame)})" in written["damaged_inputs"][0]
    surrogate_drops = [d for d in read_drops(str(tmp_path / "out")) if d.reason == "malformed_line"]
    assert len(surrogate_drops) == len(SURROGATES) and all("surrogate" in d.detail for d in surrogate_drops)
    listed = list(read_drops(str(tmp_path / "out")))
    per = {}
    for d in listed:
        per[(d.stage, d.reason)] = per.get((d.stage, d.reason), 0) + 1
    assert max(per.values()) == 100 and ("links", "low_karma") in per
    size = sum(p.stat().st_size for p in (tmp_path / "out" / DROPS_DIR).iterdir())
    assert size < 0.1 * dump.stat().st_size
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["stages"]["links"]["balanced"]


def test_fast_decoder_agrees_with_the_json_module(monkeypatch):
    from crawl.sources import dumps
    lines = [json.dumps(r).encode() for r in synthetic_rows(500)] + [
        b'{"url": "http://a.com/", "score": 1e400}', b'{"url": "http://a.com/", "score": NaN}', b"[1]", b"{}",
        b'{"url": "http://a.com/\\ud800", "score": 3}', b'{"url": "a", "url": "b", "score": "7", "id": 5}',
        b'{"url": "http://a.com/", "score": 3, "created_utc": null, "is_self": null, "subreddit": ["x"]}',
        b'{"url": "http://a.com/", "score": 3}   ', b'{"url": "http://a.com/", "score": 3} x', b"\xff\xfe{}",
        b'{"score": 1}', b'{"url": 1, "score": 1}', b'{"url": "u", "score": 99999999999999999999999}',
        b'{"url": "u", "score": 2.7, "created_utc": "1500000000.5"}', b'{"url": "u", "x": ' + b"[" * 5000 + b"]" * 5000 + b', "score": 1}']
    fast = [dumps.dump_line_fields(l.strip()) for l in lines]
    monkeypatch.setattr(dumps, "_decode_row", None)
    slow = [dumps.dump_line_fields(l.strip()) for l in lines]
    assert fast == slow
    assert "surrogate" in fast[lines.index(b'{"url": "http://a.com/\\ud800", "score": 3}')]
    assert sum(isinstance(f, str) for f in fast) >= 8


def test_normalized_host_is_host_of():
    from crawl.links import _normalized_host, host_of
    for url in URLS + [u for r in synthetic_rows(300) for u in [r["url"]]]:
        norm = normalize_url(url)
        if norm:
            assert _normalized_host(norm) == host_of(norm), norm
