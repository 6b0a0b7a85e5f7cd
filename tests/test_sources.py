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
    assert c["source.in"] == c.get("source.out", 0) + c["source.drop.malformed_line"]
    assert c["source.drop.malformed_line"] >= 1


def test_url_list(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_text("http://example.com/a\nhttp://example.com/b 7\n\nhttp://example.com/c notanumber\n")
    items = list(iter_file(open(path, "rb"), str(path), default_karma=3))
    assert [(i.url, i.karma) for i in items if isinstance(i, Submission)] == [
        ("http://example.com/a", 3), ("http://example.com/b", 7)]
    assert [i.reason for i in items if isinstance(i, Drop)] == ["malformed_line"]


def test_parse_dump_line_reasons():
    assert parse_dump_line(b"nope") == "not JSON"
    assert parse_dump_line(b'{"url": "http://a"}') == "missing field score"
    assert isinstance(parse_dump_line('{"url": "http://a", "score": 1}'), Submission)
