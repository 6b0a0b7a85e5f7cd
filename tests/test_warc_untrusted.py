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


# ------------------------------------------------------------------------------------- records that lie
def handmade(name, body=b"<html><body><p>handmade</p></body></html>", warc_len=None, http_len=None, extra=b"",
             trailer=b"\r\n\r\n"):
    """One response record written byte by byte (one gzip member), saying what we choose, true or not."""
    url = f"http://hand.example/{name}"
    http_len = str(len(body)).encode() if http_len is None else http_len
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " + http_len + b"\r\n\r\n" + body
    warc_len = str(len(http)).encode() if warc_len is None else warc_len
    link = json.dumps(Link(url, "hand.example", 5, ["s"], 1_400_000_000, 1)._asdict(), sort_keys=True)
    head = (b"WARC/1.1\r\nWARC-Type: response\r\nWARC-Target-URI: " + url.encode() +
            b"\r\nWARC-Date: 2020-09-13T12:26:40Z\r\nWARC-Record-ID: <urn:uuid:" + name.encode().ljust(8, b"0") +
            b">\r\nContent-Type: application/http; msgtype=response\r\nWebText-Link: " + link.encode() + b"\r\n" +
            extra + b"Content-Length: " + warc_len + b"\r\n\r\n")
    return _member(head + http + trailer)


WRONG_SHA1 = b"sha1:" + b"A" * 32


def lying_records():
    """(name, record bytes, kept?) for each case; the honest ones prove the checks take what is exact."""
    good = page("warcio")
    flipped = gzip.decompress(page_records(page("flipped"))[0]).replace(b"page flipped", b"page flapped")
    return [
        ("honest", handmade("honest"), True),
        ("warcio", page_records(good)[0], True),
        ("empty", handmade("empty", warc_len=b""), False),
        ("negative", handmade("negative", warc_len=b"-5"), False),
        ("not-a-number", handmade("nan", warc_len=b"12abc"), False),
        ("shorter", handmade("shorter", warc_len=str(len(b"x" * 60)).encode()), False),        # block cut
        ("longer", handmade("longer", warc_len=b"4000"), False),                                 # block padded
        ("extra-bytes", handmade("extra", trailer=b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), False),   # more after it
        ("http-length", handmade("httplen", http_len=b"9999"), False),
        ("block-digest", handmade("bdigest", extra=b"WARC-Block-Digest: " + WRONG_SHA1 + b"\r\n"), False),
        ("payload-digest", handmade("pdigest", extra=b"WARC-Payload-Digest: " + WRONG_SHA1 + b"\r\n"), False),
        ("flipped-body", _member(flipped), False),                          # warcio's digests, one byte changed
    ]


def test_a_record_is_kept_only_when_it_is_exactly_what_it_claims(tmp_path):
    cases = lying_records()
    alone, logged = tmp_path / "alone", tmp_path / "logged"
    alone.mkdir()
    logged.mkdir()
    blob, lines, offset = b"", [], 0
    for name, record, _ in cases:
        lines.append(line(f"http://hand.example/{name}", "fetch-lies.warc.gz", offset))
        blob += record
        offset += len(record)
    (alone / "fetch-lies.warc.gz").write_bytes(blob)
    (logged / "fetch-lies.warc.gz").write_bytes(blob)
    (logged / "outcomes-lies.jsonl").write_text("\n".join(lines) + "\n")
    kept = sorted(p.final_url for p in (page("warcio"),)) + ["http://hand.example/honest"]
    for warc, tag in ((alone, "alone-lies"), (logged, "logged-lies")):   # WARCs alone, and through outcome logs
        pages, drops, counters = read(warc, tag)
        assert sorted(p.final_url for p in pages) == sorted(kept), tag
        assert [d.reason for d in drops] == ["warc_bad_record"] * (len(cases) - 2), (tag, drops)
        assert counters["extract.in"] == len(drops) == counters["extract.drop.warc_bad_record"]
    honest = next(p for p in pages if p.final_url.endswith("honest"))
    assert honest.body == b"<html><body><p>handmade</p></body></html>"


def test_a_member_that_never_ends_is_inflated_a_bounded_amount(tmp_path):
    """A gzip member that inflates forever (here 64 MiB of zeros and no end): a reader that skips a too-large
    record to find the next one gives up after SKIP_FACTOR times the bound, not after the whole member."""
    import zlib
    from crawl.fetch.warc_read import HEADER_ROOM, SKIP_FACTOR, response_pages
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    endless = z.compress(b"WARC/1.1\r\nWARC-Type: response\r\nContent-Length: 999999999999\r\n\r\n")
    block = bytes(1 << 20)
    endless += b"".join(z.compress(block) for _ in range(64)) + z.flush(zlib.Z_SYNC_FLUSH)   # never finished
    first, after = page_records(page(1))[0], page_records(page(2))[0]
    path = tmp_path / "fetch-endless.warc.gz"
    path.write_bytes(first + endless + after)
    assert path.stat().st_size < 1 << 20
    max_bytes = 1 << 20
    items = list(response_pages(str(path), max_bytes))
    assert isinstance(items[0], Page) and items[0].link.url == page(1).link.url
    assert len(items) == 2 and items[1].reason == "warc_too_large"
    assert f"inflates past {SKIP_FACTOR * (max_bytes + HEADER_ROOM)} bytes" in str(items[1])
