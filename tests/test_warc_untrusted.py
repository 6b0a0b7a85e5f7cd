"""`extract --warc` and resume on WARC folders crafted to hurt: torn and forged outcome lines, path traversal,
records over the size cap (a gzip bomb), damaged records, missing files. Each becomes a counted drop."""
import gzip
import io
import json
import os
from collections import defaultdict

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from core.records import Link, Page
from crawl.fetch.fetcher import FetchResult
from crawl.fetch.warc import ReadWarcPages, WarcSink, outcome_files, page_records, parse_outcomes

COLLECTED = defaultdict(list)


def _append(x, name):
    COLLECTED[name].append(x)


def page(i, body=None, host="good.example"):
    url = f"http://{host}/{i}"
    body = body if body is not None else f"<html><body><p>page {i}</p></body></html>".encode()
    return Page(Link(url, host, 5, ("s",), 1_400_000_000, 1), url, 200, "text/html", body, "utf-8", 1_600_000_000.0)


def capture(warc_dir, pages):
    sink = WarcSink(str(warc_dir), commit_seconds=0)
    for p in pages:
        sink.add(p.link, FetchResult("ok", p))
    sink.close()
    return sink.committed[-1]


def read(warc_dir, tag, max_bytes=1 << 20):
    COLLECTED.pop(f"{tag}.pages", None), COLLECTED.pop(f"{tag}.drops", None)
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | ReadWarcPages(str(warc_dir), max_bytes)
    out["pages"] | "P" >> beam.Map(_append, f"{tag}.pages")
    out["dropped"] | "D" >> beam.Map(_append, f"{tag}.drops")
    result = p.run()
    result.wait_until_finish()
    counters = defaultdict(int)
    for c in result.metrics().query()["counters"]:
        counters[c.key.metric.name] += c.committed
    return COLLECTED[f"{tag}.pages"], COLLECTED[f"{tag}.drops"], counters


def line(url, warc, offset, outcome="ok"):
    link = Link(url, url.split("/")[2], 5, ["s"], 1_400_000_000, 1)._asdict()
    return json.dumps({"url": url, "outcome": outcome, "detail": "", "warc": warc, "offset": offset, "link": link})


def test_crafted_outcome_logs_and_records_are_counted_drops(tmp_path):
    warc = tmp_path / "warc"
    good = [page(i) for i in range(3)]
    capture(warc, good)
    bomb = page("bomb", body=b"\0" * (8 << 20))                   # 8 MiB of zeros: ~8 KiB on disk
    bomb_log = capture(warc, [bomb])
    # A real, valid capture outside the folder, which an outcomes line then points at.
    outside = tmp_path / "outside"
    secret_log = capture(outside, [page("secret", host="secret.example")])
    secret = json.loads((outside / os.path.basename(secret_log)).read_text().splitlines()[0])
    good_rec = json.loads((warc / os.path.basename(outcome_files(str(warc))[0])).read_text().splitlines()[0])
    torn = line("http://good.example/torn", good_rec["warc"], good_rec["offset"])
    (warc / "outcomes-crafted.jsonl").write_text("\n".join([
        line("http://secret.example/a", "../outside/" + secret["warc"], secret["offset"]),   # traversal
        line("http://secret.example/b", str(outside / secret["warc"]), secret["offset"]),    # absolute path
        line("http://good.example/mid", good_rec["warc"], good_rec["offset"] + 7),           # inside a record
        line("http://good.example/gone", "fetch-0000.warc.gz", 0),                          # no such file
        line("http://good.example/neg", good_rec["warc"], -5),
        line("http://good.example/dropped", None, None, outcome="http_4xx"),                # not a page: ignored
        "x" * 200_000,                                                                      # overlong line
        "\xff not json",
        torn[: len(torn) // 2],                                                             # torn, no newline
    ]))
    pages, drops, counters = read(warc, "crafted")
    assert sorted(p.link.url for p in pages) == sorted(p.link.url for p in good)
    assert {p.link.url: p.body for p in pages} == {p.link.url: p.body for p in good}
    by_reason = defaultdict(list)
    for d in drops:
        by_reason[d.reason].append(d.url)
    assert len(by_reason["warc_bad_outcome"]) == 6       # traversal, absolute, negative, overlong, garbage, torn
    assert sorted(by_reason["warc_unreadable"]) == ["http://good.example/gone", "http://good.example/mid"]
    assert by_reason["warc_too_large"] == [bomb.link.url]
    assert all(d.stage == "extract" for d in drops)
    assert counters["extract.in"] == len(drops) == sum(v for k, v in counters.items() if k.startswith("extract.drop."))
    # Resume reads the same logs: a torn or forged line is skipped, never a crash.
    lines = (warc / "outcomes-crafted.jsonl").read_bytes().splitlines()
    assert [r.url for r in parse_outcomes(lines)] == ["http://good.example/mid", "http://good.example/gone",
                                                       "http://good.example/dropped"]
    assert bomb_log


def _member(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as g:
        g.write(data)
    return buf.getvalue()


def test_warc_files_alone_bounded_and_damaged(tmp_path):
    """No outcome logs: every response record, with a too-large record skipped and a torn tail counted."""
    warc = tmp_path / "warc"
    warc.mkdir()
    good = [page(i) for i in range(3)]
    records = [page_records(p)[0] for p in good]
    big = page_records(page("big", body=b"a" * (2 << 20)))[0]
    header_bomb = _member(b"WARC/1.1\r\nWARC-Type: response\r\nX-Pad: " + b"b" * (4 << 20) + b"\r\n\r\n")
    torn = page_records(page("torn"))[0]
    (warc / "fetch-a.warc.gz").write_bytes(records[0] + big + records[1] + header_bomb + records[2] + torn[:-9])
    (warc / "fetch-b.warc.gz").write_bytes(b"this is not gzip at all")
    pages, drops, counters = read(warc, "alone")
    assert sorted(p.link.url for p in pages) == sorted(p.link.url for p in good)
    assert sorted(d.reason for d in drops) == ["warc_too_large", "warc_too_large", "warc_unreadable", "warc_unreadable"]
    assert counters["extract.in"] == 4 == counters["extract.drop.warc_too_large"] + counters["extract.drop.warc_unreadable"]
