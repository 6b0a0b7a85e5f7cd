"""Never read without a bound, never keep a cut body: every body (2xx, 3xx, 4xx, 5xx, robots.txt) is read only by
our own capped reader or not at all, and a body cut short, by our deadline or by the server, is never kept as
complete, whatever its framing. Each case plays raw bytes from tests/rawhttp.py against the real fetcher."""
import time
import zlib

import pytest

from crawl.fetch.fetcher import FetchConfig, fetch_one, make_session
from rawhttp import CLOSE, HOLD, KEEP, RESET, RawHTTP, chunked, compress, head

PAGE = b"<!doctype html><html><body><p>Hello.</p></body></html>"
HTML = {"Content-Type": "text/html"}
OK = [(head(200, HTML, length=len(PAGE)) + PAGE, 0)]


def _cfg(**kw):
    base = dict(allow_private=True, min_delay=0.0, connect_timeout=1.0, read_timeout=2.0, page_timeout=0.6,
                robots=False, robots_timeout=0.6, backoff=0.01, max_retry_wait=1.0)
    base.update(kw)
    return FetchConfig(**base)


def _fetch(script, path="/", **kw):
    cfg = _cfg(**kw)
    with RawHTTP(script) as srv:
        t0 = time.monotonic()
        result = fetch_one(make_session(cfg), srv.url(path), cfg)
        took = time.monotonic() - t0
        time.sleep(0.05)                            # let the server notice a hang-up
    return result, took, srv


def trickle(n=200, every=0.01):
    return [(b"x" * 100, every)] * n


def gzip_flood(conn, request, stop, steps=150):
    """A redirect whose gzip body decodes to 1 MiB per ~1 KiB sent, for as long as the client reads."""
    conn.sendall(head(302, {"Location": "/b", "Content-Encoding": "gzip"}))
    z, block = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(2**20)
    for _ in range(steps):
        if stop():
            return
        conn.sendall(z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH))
        time.sleep(0.005)


# ------------------------------------------------------------------------------------ a redirect's body: never read
@pytest.mark.parametrize("first", [
    [(head(302, {"Location": "/b"}), 0)] + trickle(),                        # endless trickle, no length
    [(head(301, {"Location": "/b"}, length=10**9), 0)] + trickle(),          # a huge declared length
    [(head(307, {"Location": "/b", "Transfer-Encoding": "chunked"}), 0)] + [(chunked(b"x" * 100, complete=False),
                                                                             0.01)] * 200,
    gzip_flood,                                                              # a compressed flood
    [(head(301, {"Location": "/b"}, length=5) + b"hello", 0), HOLD],         # found by test_fuzz_http on main:
], ids=["until-close", "content-length", "chunked", "gzip-flood", "complete-then-idle"])   # drained, then reused
def test_a_redirects_body_is_never_read(first):
    result, took, srv = _fetch({"/": first, "/b": OK})
    assert result.outcome == "ok" and result.page.body == PAGE, result
    assert took < 0.4                               # on main: read until the page timeout, then "timeout"
    hop = srv.requests("GET / ")[0]
    assert hop.cut and hop.sent < 50_000            # we hung up on it instead of draining it


@pytest.mark.parametrize("status,outcome", [(404, "http_4xx"), (500, "http_5xx"), (429, "http_429")])
def test_an_error_body_is_never_read(status, outcome):
    hdrs = {"Content-Encoding": "gzip", "Retry-After": "0"}     # urllib3 drains a body it retries on Retry-After
    result, took, srv = _fetch([(head(status, hdrs), 0)] + trickle(), max_retries=1)
    assert result.outcome == outcome, result
    assert took < 0.4
    assert all(c.cut and c.sent < 50_000 for c in srv.log)


# ------------------------------------------------------------------------------------ a cut body is never kept
CUT_BY_OUR_DEADLINE = {
    "until-close": [(head(200, HTML) + PAGE, 0), (b"<p>more", 0.3), HOLD],
    "http/1.0": [(head(200, HTML, version="HTTP/1.0") + PAGE, 0), HOLD],
    "content-length-short": [(head(200, HTML, length=len(PAGE) + 10) + PAGE, 0), HOLD],
    "chunked-unterminated": [(head(200, {**HTML, "Transfer-Encoding": "chunked"}) + chunked(PAGE, 10, False), 0),
                             HOLD],
    "gzip-until-close": [(head(200, {**HTML, "Content-Encoding": "gzip"}) + compress(PAGE * 50, "gzip")[:-20], 0),
                         HOLD],
    "gzip-complete-until-close": [(head(200, {**HTML, "Content-Encoding": "gzip"}) + compress(PAGE, "gzip"), 0),
                                  HOLD],
}


@pytest.mark.parametrize("name", sorted(CUT_BY_OUR_DEADLINE))
def test_a_body_cut_by_our_deadline_is_a_timeout_whatever_the_framing(name):
    result, took, srv = _fetch(CUT_BY_OUR_DEADLINE[name])
    assert result.outcome == "timeout" and result.page is None, result    # on main: until-close ones were kept
    assert 0.6 <= took < 1.0


CUT_BY_THE_SERVER = {
    "content-length-short": ([(head(200, HTML, length=len(PAGE) + 10) + PAGE, 0), CLOSE], "connection_error"),
    "http/1.0-content-length-short": ([(head(200, HTML, length=99, version="HTTP/1.0") + PAGE, 0), CLOSE],
                                      "connection_error"),
    "chunked-unterminated": ([(head(200, {**HTML, "Transfer-Encoding": "chunked"}) + chunked(PAGE, 10, False), 0),
                              CLOSE], "connection_error"),
    "chunked-mid-chunk": ([(head(200, {**HTML, "Transfer-Encoding": "chunked"}) + b"100\r\n" + PAGE, 0), CLOSE],
                          "connection_error"),
    "until-close-reset": ([(head(200, HTML) + PAGE, 0.0), RESET], "connection_error"),
    "gzip-until-close-cut": ([(head(200, {**HTML, "Content-Encoding": "gzip"}) + compress(PAGE * 50, "gzip")[:-20],
                               0), CLOSE], "content_encoding_error"),
}


@pytest.mark.parametrize("name", sorted(CUT_BY_THE_SERVER))
def test_a_body_cut_by_the_server_is_a_named_drop(name):
    script, outcome = CUT_BY_THE_SERVER[name]
    result, took, srv = _fetch(script)
    assert result.outcome == outcome and result.page is None, result
    assert took < 0.5


@pytest.mark.parametrize("script", [
    OK,
    [(head(200, HTML) + PAGE, 0), CLOSE],                                            # until-close, ended by FIN
    [(head(200, HTML, version="HTTP/1.0") + PAGE, 0.0), CLOSE],
    [(head(200, {**HTML, "Transfer-Encoding": "chunked"}) + chunked(PAGE, 7), 0), HOLD],
    [(head(200, {**HTML, "Content-Encoding": "gzip"}, length=len(compress(PAGE, "gzip"))) + compress(PAGE, "gzip"),
      0), HOLD],
], ids=["content-length", "until-close", "http/1.0", "chunked", "gzip"])
def test_a_complete_body_is_kept_whole_and_in_time(script):
    result, took, srv = _fetch(script)
    assert result.outcome == "ok" and result.page.body == PAGE, result
    assert took < 0.5


def test_a_body_over_the_cap_is_refused_whatever_the_framing():
    big = PAGE + b"<p>" + b"x" * 20_000
    for script in ([(head(200, HTML) + big, 0), CLOSE],
                   [(head(200, {**HTML, "Transfer-Encoding": "chunked"}) + chunked(big, 999), 0), HOLD],
                   [(head(200, {**HTML, "Content-Encoding": "gzip"}) + compress(big, "gzip"), 0), CLOSE]):
        result, took, srv = _fetch(script, max_bytes=10_000, max_decompressed_bytes=10_000)
        assert result.outcome == "too_large" and took < 0.5, result


def test_a_complete_body_leaves_its_connection_for_the_next_page():
    """The hot path is unchanged: a body read to its end frees the kept-alive connection for reuse."""
    cfg = _cfg()
    session = make_session(cfg)
    with RawHTTP([OK[0], KEEP]) as srv:
        results = [fetch_one(session, srv.url(f"/p{i}"), cfg).outcome for i in range(3)]
    assert results == ["ok"] * 3
    assert len(srv.log) == 1 and len(srv.log[0].requests) == 3
