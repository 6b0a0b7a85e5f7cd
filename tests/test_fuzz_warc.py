"""Fuzz target: a WARC record. Response records written by the project's own writer (crawl/fetch/warc.py
page_records: one gzip member each, as a run's --warc-dir holds them), then mutated (a lying Content-Length, a
changed or cut block, random bytes in the gzip stream), read back the two ways `webtext extract --warc` reads
(crawl/fetch/warc_read.py: response_pages in file order, load_page at an outcome's offset): nothing raises out
but Unreadable (a counted drop), and a record is kept only when it is exactly what it claims: its block has the
declared length and the WARC-Block-Digest. Budget: the `ci` profile; `python bench/fuzz.py --target warc`."""
from __future__ import annotations

import atexit
import base64
import gzip
import hashlib
import os
import re
import shutil
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, strategies as st  # noqa: E402

from core.records import Link, Page  # noqa: E402
from crawl.fetch.warc import page_records  # noqa: E402
from crawl.fetch.warc_read import Captured, Unreadable, load_page, response_pages  # noqa: E402

WARC_DIR = tempfile.mkdtemp(prefix="fuzz-warc-")    # one file, rewritten per case (no pytest fixture: bench/fuzz.py)
atexit.register(shutil.rmtree, WARC_DIR, True)
NAME = "fetch-fuzz.warc.gz"


def page(i: int, body: bytes) -> Page:
    url = f"http://example.com/{i}"
    return Page(Link(url, "example.com", 5, ("r",), 0), url, 200, "text/html", body, "utf-8", 1.7e9)


def split_record(raw: bytes):
    """(WARC header bytes, block, trailer) of one uncompressed record."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    return head, rest[:-4] if rest.endswith(b"\r\n\r\n") else rest, b"\r\n\r\n"


def claims(raw: bytes):
    """(declared length or None, block digest or None) from a record's WARC headers."""
    head = split_record(raw)[0].decode("latin-1")
    length = re.search(r"(?im)^content-length:\s*(\S*)\s*$", head)
    digest = re.search(r"(?im)^warc-block-digest:\s*sha1:(\S+)\s*$", head)
    return (length.group(1) if length else None), (digest.group(1) if digest else None)


def honest(raw: bytes) -> bool:
    """The record is exactly what it claims: block length == Content-Length, and the block digest matches."""
    length, digest = claims(raw)
    _, block, _ = split_record(raw)
    if length is None or not length.isdigit() or int(length) != len(block):
        return False
    return digest is None or base64.b32encode(hashlib.sha1(block).digest()).decode() == digest.upper()


MUTATIONS = ("none", "length", "block", "cut", "gzip")


def mutate(raw: bytes, how: str, n: int, byte: int) -> bytes:
    """One uncompressed record, changed the way `how` says (n, byte: where and what)."""
    head, block, trailer = split_record(raw)
    if how == "length":      # a lying Content-Length: shorter, longer, zero, negative, empty, not a number
        lies = [str(max(0, len(block) - 1 - n % 50)), str(len(block) + 1 + n % 50), "0", "-1", "", "x", str(2**70)]
        head = re.sub(rb"(?im)^(content-length:)[^\r\n]*", lambda m: m.group(1) + b" " + lies[n % len(lies)].encode(),
                      head, count=1)
    elif how == "block" and block:
        i = n % len(block)
        block = block[:i] + bytes([(block[i] + 1 + byte % 255) % 256]) + block[i + 1:]
    elif how == "cut" and block:
        block = block[:n % len(block)]
    return head + b"\r\n\r\n" + block + trailer


def write_file(members) -> list:
    """Write the members to the WARC file; their offsets."""
    offsets, pos = [], 0
    with open(os.path.join(WARC_DIR, NAME), "wb") as f:
        for m in members:
            offsets.append(pos)
            f.write(m)
            pos += len(m)
    return offsets


def read_all(offsets):
    """What the two readers keep: response_pages' Pages, and load_page's per offset (Unreadable as None)."""
    seq = [p for p in response_pages(os.path.join(WARC_DIR, NAME)) if not isinstance(p, Unreadable)]
    by_offset = []
    for i, off in enumerate(offsets):
        rec = Captured(f"http://example.com/{i}", "ok", "", NAME, off, page(i, b"").link)
        try:
            by_offset.append(load_page(WARC_DIR, rec))
        except Unreadable:
            by_offset.append(None)
    return seq, by_offset


def specs_of(mutations):
    return st.lists(st.tuples(st.binary(max_size=300), st.sampled_from(mutations), st.integers(0, 10**6),
                              st.integers(0, 255)), min_size=1, max_size=4)


# Every mutation: a lying Content-Length, a block that does not match its digest, a block shorter than declared.
@given(specs_of(MUTATIONS))
@example([(b"", "gzip", 2, 0), (b"ok", "none", 0, 0)])
@example([(b"<p>hello</p>", "length", 1, 0)])    # Content-Length one byte longer than the block
@example([(b"<p>hello</p>", "length", 3, 0)])    # Content-Length: -1 (AttributeError out of response_pages)
def test_a_record_is_kept_only_when_it_is_what_it_claims(specs):
    check(specs)


def check(specs):
    members, raws = [], []
    for i, (body, how, n, byte) in enumerate(specs):
        resp, _req = page_records(page(i, body))
        raw = gzip.decompress(resp)
        if how == "gzip":            # damage the compressed stream instead
            i_ = n % len(resp)
            members.append(resp[:i_] + bytes([resp[i_] ^ (1 + byte % 255)]) + resp[i_ + 1:])
            raws.append(None)
            continue
        raw = mutate(raw, how, n, byte)
        raws.append(raw)
        members.append(gzip.compress(raw))
    seq, by_offset = read_all(write_file(members))          # never raises: Unreadable is the only refusal
    bodies = {f"http://example.com/{i}": body for i, (body, *_rest) in enumerate(specs)}
    for p in seq + [p for p in by_offset if p is not None]:
        i = int(p.final_url.rsplit("/", 1)[1])
        assert raws[i] is None or honest(raws[i]), (specs[i], p.body)
        assert p.body == bodies[p.final_url]                 # what was stored, byte for byte
    for i, raw in enumerate(raws):                           # an untouched record is still read
        if raw is not None and specs[i][1] == "none":
            assert by_offset[i] is not None and by_offset[i].body == specs[i][0]


@pytest.mark.parametrize("how,n", [("length", 0), ("length", 1), ("length", 2), ("length", 3), ("block", 0),
                                   ("cut", 10)])
def test_a_lying_record_is_not_kept(how, n):
    """Content-Length shorter / longer than the block, 0, -1; a changed byte (digest mismatch); a block cut
    inside its HTTP headers (kept with an empty body on main)."""
    resp, _ = page_records(page(0, b"<p>hello world</p>"))
    raw = mutate(gzip.decompress(resp), how, n, 7)
    assert not honest(raw)
    seq, by_offset = read_all(write_file([gzip.compress(raw)]))
    assert seq == [] and by_offset == [None]
