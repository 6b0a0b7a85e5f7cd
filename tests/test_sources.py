"""Pushshift dumps and URL lists: the real 2005 months, every compression, malformed lines counted."""
import bz2
import collections
import gzip
import json
import lzma

import apache_beam as beam
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to

from conftest import beam_pipeline, counters
from crawl.links import HarvestLinks, LinkRules, normalize_url
from core.records import Drop, Submission
from crawl.sources.dumps import ReadSubmissions, iter_file, parse_dump_line

MONTHS = ("RS_v2_2005-06", "RS_v2_2005-07")


def raw_rows(corpus, month):
    """The month's JSON objects, read with lzma from the .xz copy (independent of our zstd path)."""
    with lzma.open(corpus / "reddit" / f"{month}.xz") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_zst_needs_the_large_window(corpus):
    data = (corpus / "reddit" / "RS_v2_2005-06.zst").read_bytes()
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(data).read()
    with open(corpus / "reddit" / "RS_v2_2005-06.zst", "rb") as f:
        subs = list(iter_file(f, "RS_v2_2005-06.zst"))
    assert len(subs) == 103 and all(isinstance(s, Submission) for s in subs)


def test_real_months_through_beam(corpus):
    rows = [r for m in MONTHS for r in raw_rows(corpus, m)]
    # Expected, computed here from the raw JSON: per-URL max score >= 3 among non-self, non-NSFW posts whose
    # host is not Wikipedia/blocked/media (checked per row with the same URL normalization).
    best = collections.defaultdict(int)
    kept_rows = 0
    for r in rows:
        if r["is_self"] or r["over_18"]:
            continue
        url = normalize_url(r["url"])
        host = url.split("/")[2] if url else ""
        if not url or host.endswith("wikipedia.org") or any(host == d or host.endswith("." + d) for d in LinkRules().blocked_domains):
            continue
        if url.lower().split("?")[0].endswith(LinkRules().non_page_extensions):
            continue
        kept_rows += 1
        best[url] = max(best[url], r["score"])
    expected_links = sorted(u for u, k in best.items() if k >= 3)
    assert len(rows) == 103 + 1079 and len(expected_links) > 500

    p = beam_pipeline()
    subs = p | ReadSubmissions([str(corpus / "reddit" / f"{m}.zst") for m in MONTHS])
    links = subs["submissions"] | HarvestLinks(LinkRules())
    assert_that(links["links"] | beam.Map(lambda l: l.url), equal_to(expected_links))
    c = counters(p.run())
    assert c["source.in"] == c["source.out"] == len(rows)
    assert c["submissions.out"] == kept_rows
    assert c["links.out"] == len(expected_links)
    assert c["links.in"] == c["links.out"] + c.get("links.drop.low_karma", 0) + c.get("links.drop.duplicate_url", 0)


@pytest.mark.parametrize("suffix, opener", [
    (".ndjson", open), (".ndjson.gz", gzip.open), (".ndjson.xz", lzma.open), (".ndjson.bz2", bz2.open),
])
def test_compressions_and_malformed_lines(tmp_path, suffix, opener):
    good = {"id": "a1", "url": "http://example.com/x", "score": 5, "is_self": False, "over_18": False,
            "subreddit": "news", "created_utc": "1120000000"}
    lines = [json.dumps(good), '{"id": "b", "url": "http://x.com/', "{}", "[1, 2]",
             json.dumps(dict(good, score="many")), "\x00\x01junk", "", json.dumps(dict(good, id="c2"))]
    path = tmp_path / f"RS_test{suffix}"
    with opener(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    items = list(iter_file(open(path, "rb"), str(path)))
    subs = [i for i in items if isinstance(i, Submission)]
    drops = [i for i in items if isinstance(i, Drop)]
    assert [s.id for s in subs] == ["a1", "c2"] and subs[0].created_utc == 1120000000
    assert len(drops) == 5 and {d.reason for d in drops} == {"malformed_line"}
    assert any("missing field url" in d.detail for d in drops)


def test_truncated_zst_is_counted_not_fatal(tmp_path):
    data = "\n".join(json.dumps({"id": str(i), "url": f"http://e.com/{i}", "score": 3}) for i in range(2000))
    blob = zstandard.ZstdCompressor().compress(data.encode())
    path = tmp_path / "RS_cut.zst"
    path.write_bytes(blob[: len(blob) // 2])
    p = beam_pipeline()
    _ = p | ReadSubmissions([str(path)])
    c = counters(p.run())
    assert c["source.in"] == c.get("source.out", 0) + sum(v for k, v in c.items() if k.startswith("source.drop."))
    assert c["source.drop.truncated_file"] == 1


def test_url_list(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_bytes(b"http://example.com/a\nhttp://example.com/b 7\n\nhttp://example.com/c notanumber\n"
                     b"http://example.com/\xed\xa0\x80 5\n")     # a surrogate's bytes: not UTF-8, never a str
    items = list(iter_file(open(path, "rb"), str(path), default_karma=3))
    assert [(i.url, i.karma) for i in items if isinstance(i, Submission)] == [
        ("http://example.com/a", 3), ("http://example.com/b", 7)]
    assert [i.reason for i in items if isinstance(i, Drop)] == ["malformed_line"] * 2


def test_parse_dump_line_reasons():
    assert parse_dump_line(b"nope") == "not JSON"
    assert parse_dump_line(b'{"url": "http://a"}') == "missing field score"
    assert isinstance(parse_dump_line('{"url": "http://a", "score": 1}'), Submission)


# ------------------------------------------------------------------------------------- damaged archives
def _frames_with_a_corrupt_one(tmp_path):
    """RS_frames.zst: three good frames, a fourth that cannot be decoded, a fifth good one. The cut between
    frames 3 and 4 falls inside line 30, so that line is never whole."""
    rows = [json.dumps({"id": f"s{i}", "url": f"http://e{i}.com/a", "score": 5}).encode() for i in range(50)]
    text = b"".join(r + b"\n" for r in rows)
    cut = [sum(len(r) + 1 for r in rows[:n]) for n in (10, 20)] + [sum(len(r) + 1 for r in rows[:29]) + 7]
    parts = [text[:cut[0]], text[cut[0]:cut[1]], text[cut[1]:cut[2]]]
    good = [zstandard.ZstdCompressor().compress(p) for p in parts]
    bad = b"\x28\xb5\x2f\xfd" + b"\xff" * 64                         # a frame magic, then a header zstd refuses
    tail = zstandard.ZstdCompressor().compress(text[cut[2]:])
    path = tmp_path / "RS_frames.zst"
    path.write_bytes(b"".join(good) + bad + tail)
    return path, sum(len(g) for g in good)


def test_a_corrupt_later_frame_keeps_every_line_before_it(tmp_path):
    path, bad_at = _frames_with_a_corrupt_one(tmp_path)
    kept = []
    with pytest.raises(OSError) as caught, open(path, "rb") as f:
        for item in iter_file(f, str(path)):
            kept.append(item)
    subs = [i for i in kept if isinstance(i, Submission)]
    assert [s.id for s in subs] == [f"s{i}" for i in range(29)]            # every whole line before the damage
    assert [(d.reason, d.detail) for d in kept if isinstance(d, Drop)] == [
        ("malformed_line", "RS_frames.zst:30: line cut short by damaged input")]
    assert caught.value.reason == "corrupt_file" and f"frame 4 (at compressed byte {bad_at})" in str(caught.value)
    # Both readers of a run (ReadSubmissions and the links stage's own reader) count it the same way.
    for read in ("submissions", "links"):
        p = beam_pipeline()
        if read == "submissions":
            _ = p | ReadSubmissions([str(path)])
        else:
            _ = p | HarvestLinks(LinkRules(), dumps=[str(path)])
        c = counters(p.run())
        assert c["source.in"] == 31 and c.get("source.out", c.get("submissions.in")) == 29, (read, c)
        assert c["source.drop.malformed_line"] == 1 and c["source.drop.corrupt_file"] == 1, (read, c)


@pytest.mark.parametrize("suffix", [".ndjson.gz", ".ndjson.bz2", ".ndjson.xz"])
def test_a_damaged_later_member_of_other_compressions_is_counted(tmp_path, suffix):
    compress = {".ndjson.gz": gzip.compress, ".ndjson.bz2": bz2.compress, ".ndjson.xz": lzma.compress}[suffix]
    rows = [json.dumps({"id": f"s{i}", "url": f"http://e{i}.com/a", "score": 5}) + "\n" for i in range(400)]
    first = compress("".join(rows[:200]).encode())
    second = bytearray(compress("".join(rows[200:]).encode()))
    second[len(second) // 2: len(second) // 2 + 40] = bytes(40)             # damage inside the compressed data
    path = tmp_path / f"RS_members{suffix}"
    path.write_bytes(first + bytes(second))
    p = beam_pipeline()
    _ = p | ReadSubmissions([str(path)])
    c = counters(p.run())
    assert c["source.out"] >= 200                                           # the whole first member
    assert c["source.in"] == c["source.out"] + sum(v for k, v in c.items() if k.startswith("source.drop."))
    assert c.get("source.drop.corrupt_file", 0) + c.get("source.drop.truncated_file", 0) == 1, c


def test_an_input_path_that_is_not_utf8_is_one_line(tmp_path, capsys):
    """Beam hands paths between stages as UTF-8 strings: a file name with undecodable bytes (Python's surrogate
    escapes) would fail the run at build time; it is a user mistake, said in one line."""
    from webtext import main
    bad = tmp_path / "RS_\udcff.ndjson"        # the byte 0xff on disk
    bad.write_text(json.dumps({"id": "a", "url": "http://example.com/a", "score": 5}) + "\n")
    for given in (str(bad), str(tmp_path / "RS_*.ndjson")):
        code = main(["run", "--input", given, "--out", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"error: input path {ascii(str(bad))} is not valid UTF-8; rename the file"
