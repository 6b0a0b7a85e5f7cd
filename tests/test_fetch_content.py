"""Body handling without the network: bounded inflate, sniffing, charset, Retry-After."""
import email.utils
import gzip
import time
import zlib

import pytest

from core.retry import retry_after
from crawl.fetch.content import BodyError, _Inflater, detect_encoding, looks_binary, looks_html, sniff_body

HTML = ("text/html", "application/xhtml+xml")


def test_inflate_gzip_multi_member_and_raw_deflate():
    inf = _Inflater("gzip", 1000)
    data = gzip.compress(b"<html>") + gzip.compress(b"</html>")
    for i in range(0, len(data), 7):            # arbitrary chunk boundaries
        inf.feed(data[i:i + 7])
    assert inf.finish() == b"<html></html>"
    raw = zlib.compressobj(wbits=-15)
    deflated = raw.compress(b"<p>raw deflate</p>") + raw.flush()
    inf = _Inflater("deflate", 1000)
    inf.feed(deflated)
    assert inf.finish() == b"<p>raw deflate</p>"
    inf = _Inflater("deflate", 1000)
    inf.feed(zlib.compress(b"<p>zlib</p>"))
    assert inf.finish() == b"<p>zlib</p>"


def test_inflate_bomb_stops_at_the_cap_without_inflating_it_all():
    bomb = gzip.compress(b"\0" * (64 * 2**20), compresslevel=9)   # 64 MiB of zeros in ~64 KiB
    inf = _Inflater("gzip", 2**20)
    with pytest.raises(BodyError) as e:
        inf.feed(bomb)
    assert e.value.reason == "too_large"
    assert len(inf.out) <= 2**20 + 1


def test_inflate_truncating_keeps_the_first_bytes_of_a_bomb():
    """robots.txt (RFC 9309 2.5): over the cap, keep the first `limit` decoded bytes instead of failing."""
    bomb = gzip.compress(b"Disallow: /\n" + b"\0" * (16 * 2**20), compresslevel=9)
    inf = _Inflater("gzip", 2**20, truncate=True)
    inf.feed(bomb)
    assert inf.full and len(inf.out) == 2**20 and inf.out.startswith(b"Disallow: /\n")


def test_inflate_garbage_and_truncation_are_encoding_errors():
    with pytest.raises(BodyError) as e:
        _Inflater("gzip", 1000).feed(b"this is not gzip at all")
    assert e.value.reason == "content_encoding_error"
    inf = _Inflater("gzip", 1000)
    inf.feed(gzip.compress(b"<html>" * 100)[:30])
    with pytest.raises(BodyError) as e:
        inf.finish()
    assert e.value.reason == "content_encoding_error"


@pytest.mark.parametrize("head", [b"\x89PNG\r\n\x1a\n", b"%PDF-1.7", b"PK\x03\x04", b"\x1f\x8b\x08", b"GIF89a",
                                  b"\xff\xd8\xff\xe0", b"\x00\x00\x00\x18ftypmp42", b"<html>\x00\x01\x02"])
def test_binary_heads(head):
    assert looks_binary(head)
    assert sniff_body("text/html", head, HTML)[0]                  # labelled html, still not html


def test_html_heads():
    assert looks_binary(b"\xff\xfe<\x00h\x00") is None              # UTF-16 with BOM is text
    for head in (b"<!DOCTYPE html><html>", b"  \n<html lang=en>", b"\xef\xbb\xbf<!doctype html>", b"<p>x</p>",
                 b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'):
        assert looks_html(head), head
    assert not looks_html(b"just some words")
    assert sniff_body("", b"<!doctype html><title>t</title>", HTML) == (None, "text/html")
    assert sniff_body("", b"plain words, no tags", HTML)[0]
    assert sniff_body("application/octet-stream", b"<html><body>x", HTML) == (None, "text/html")


@pytest.mark.parametrize("ctype,body,expected", [
    ("text/html; charset=UTF-8", b"<html>", "utf-8"),
    ("text/html; charset=\"iso-8859-1\"", b"<html>\xe9", "cp1252"),     # WHATWG: latin-1 means windows-1252
    ("text/html; charset=no-such-charset", b"<html>plain", "utf-8"),    # unknown label: fall through to sniffing
    ("text/html", b'<html><head><meta charset="shift_jis">', "shift_jis"),
    ("text/html", b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">', "koi8-r"),
    ("text/html", b"<meta charset=utf-16>", "utf-8"),
    ("text/html", b"\xef\xbb\xbf<html>", "utf-8"),
    ("text/html; charset=windows-1252", b"\xef\xbb\xbf<html>", "utf-8"),  # the BOM wins
    ("text/html", b"<html>caf\xc3\xa9", "utf-8"),
    ("text/html", b"<html>caf\xe9 \xff\xfe broken", ""),                # unknown: left to extraction
    ("", b"", "utf-8"),
])
def test_detect_encoding_never_raises(ctype, body, expected):
    assert detect_encoding(ctype, body) == expected


def test_retry_after_seconds_and_http_date():
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after(when) <= 31
    assert retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
