"""A hostile loopback web, one case per failure class: each link ends in its named outcome and nothing hangs."""
import gzip
import socket
import threading
import time

import pytest

from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import DROP_REASONS, fetch_host, fetch_one, make_session
from core.records import Link
from pipeline.demo.loopback import LoopbackWeb

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>Hello.</p></body></html>"


def _raw(h, head: bytes, body: bytes = b""):
    h.wfile.write(head + b"\r\n\r\n" + body)
    h.wfile.flush()


def _trickle(web):
    def handler(h, url):
        _raw(h, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000")
        h.wfile.write(b"<html>")
        for _ in range(200):                    # a byte every 50 ms: never silent long enough for read_timeout
            if web.stopped.wait(0.05):
                return
            try:
                h.wfile.write(b"x")
                h.wfile.flush()
            except OSError:
                return
    return handler


def _unbounded(h, url):
    # No Content-Length, no chunking: the body ends when the connection closes; 200 KB of it.
    _raw(h, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close", b"<html>" + b"a" * 200_000)


def _once_then_ok(status, retry_after):
    seen = set()

    def handler(h, url):
        if url.path in seen:
            body = PAGE.encode()
            _raw(h, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d" % len(body), body)
        else:
            seen.add(url.path)
            _raw(h, b"HTTP/1.1 %d Busy\r\nRetry-After: %s\r\nContent-Length: 0" % (status, retry_after.encode()))
    return handler


def _cookie_gate(h, url):
    # Common on news sites: set a cookie and redirect to the same URL, which then serves the page.
    if "seen=1" in (h.headers.get("Cookie") or ""):
        body = PAGE.encode()
        _raw(h, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d" % len(body), body)
    else:
        _raw(h, b"HTTP/1.1 302 Found\r\nSet-Cookie: seen=1; Path=/\r\nLocation: %s\r\nContent-Length: 0"
             % url.geturl().encode())


@pytest.fixture(scope="module")
def web():
    with LoopbackWeb() as w:
        w.add("http://ok.example/", PAGE)
        w.add("http://ok.example/gz", gzip.compress(PAGE.encode()), headers={"Content-Encoding": "gzip"})
        w.add("http://e.example/500", "oops", status=500)
        w.add("http://e.example/410", "gone", status=410)
        w.add("http://e.example/429-forever", "slow down", status=429, headers={"Retry-After": "3600"})
        w.add_handler("http://e.example/429-once", _once_then_ok(429, "1"))
        w.add_handler("http://e.example/503-once", _once_then_ok(503, "0"))
        w.add_handler("http://slow.example/trickle", _trickle(w))
        w.add_handler("http://slow.example/hang", lambda h, url: w.stopped.wait(5))
        w.add_handler("http://slow.example/hang-body", lambda h, url: (_raw(
            h, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 500", b"<html>"), w.stopped.wait(5)))
        w.add("http://big.example/cl", b"<html>" + b"a" * 200_000)
        w.add_handler("http://big.example/no-cl", _unbounded)
        w.add("http://big.example/bomb", gzip.compress(b" " * (32 * 2**20)), headers={"Content-Encoding": "gzip"})
        w.add("http://big.example/broken-gzip", b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})
        w.add("http://big.example/brotli", b"....", headers={"Content-Encoding": "br"})
        w.add("http://bin.example/png-as-html", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, content_type="text/html")
        w.add("http://bin.example/image", b"GIF89a" + b"\0" * 100, content_type="image/gif")
        w.add("http://bin.example/pdf-unlabelled", b"%PDF-1.4 ...", content_type="")
        w.add("http://bin.example/html-unlabelled", PAGE, content_type="")
        w.add("http://cs.example/bad-utf8", b"<html><body>caf\xe9 \xff\xfe</body></html>",
              content_type="text/html; charset=utf-8")
        w.add("http://cs.example/bogus", b"<html><body>caf\xe9</body></html>", content_type="text/html; charset=x-bogus")
        w.add("http://cs.example/meta", b'<html><head><meta charset="windows-1251"></head><body>\xef\xf0</body>',
              content_type="text/html")
        w.add_redirect("http://r.example/loop-a", "http://r.example/loop-b")
        w.add_redirect("http://r.example/loop-b", "/loop-a")
        for i in range(8):
            w.add_redirect(f"http://r.example/chain{i}", f"http://r.example/chain{i + 1}", status=302)
        w.add_redirect("http://r.example/to-wiki", "https://en.wikipedia.org/wiki/Web_crawler")
        w.add_redirect("http://r.example/to-reddit", "https://www.reddit.com/r/all")
        w.add_redirect("http://r.example/to-pdf", "http://files.example/paper.pdf")
        w.add_redirect("http://r.example/to-metadata", "http://169.254.169.254/latest/meta-data/")
        w.add_redirect("http://r.example/to-loopback", "http://127.0.0.1:9/admin")
        w.add_redirect("http://r.example/to-ftp", "ftp://files.example/x")
        w.add_redirect("http://r.example/ok", "http://ok.example/", status=308)
        w.add_handler("http://cookie.example/", _cookie_gate)
        w.add_robots("robots.example", "User-agent: *\nDisallow: /private/\n")
        w.add("http://robots.example/private/page", PAGE)
        w.add("http://robots.example/public", PAGE)
        w.add_handler("http://robots-hang.example/robots.txt", lambda h, url: w.stopped.wait(5))
        w.add("http://robots-hang.example/page", PAGE)
        w.add("http://robots-500.example/robots.txt", "down", status=503)
        w.add("http://robots-500.example/page", PAGE)
        w.add("http://robots-403.example/robots.txt", "no", status=403)
        w.add("http://robots-403.example/page", PAGE)
        w.add_robots("crawl-delay.example", "User-agent: webtext\nCrawl-delay: 0.4\n")
        for i in range(2):
            w.add(f"http://crawl-delay.example/{i}", PAGE)
            w.add(f"http://split.example/{i}", PAGE)
        yield w


def _cfg(web, **kw):
    base = dict(http_proxy=web.proxy_url, min_delay=0.0, connect_timeout=1.0, read_timeout=0.3, page_timeout=0.6,
                robots_timeout=0.4, max_bytes=100_000, max_decompressed_bytes=1_000_000, backoff=0.05)
    base.update(kw)
    return FetchConfig(**base)


def _fetch(web, url, **kw):
    cfg = _cfg(web, **kw)
    return fetch_one(make_session(cfg), url, cfg)


def _requests_to(web, host, path=None):
    return [e for e in web.log if e[2] == host and (path is None or e[3] == path)]


@pytest.mark.parametrize("path,outcome", [
    ("http://ok.example/", "ok"),
    ("http://ok.example/gz", "ok"),
    ("http://e.example/410", "http_4xx"),
    ("http://e.example/missing", "http_4xx"),
    ("http://e.example/429-forever", "http_429"),            # Retry-After beyond the cap: give up at once
    ("http://big.example/cl", "too_large"),
    ("http://big.example/no-cl", "too_large"),
    ("http://big.example/bomb", "too_large"),
    ("http://big.example/broken-gzip", "content_encoding_error"),
    ("http://big.example/brotli", "content_encoding_error"),
    ("http://bin.example/png-as-html", "not_html"),
    ("http://bin.example/image", "not_html"),
    ("http://bin.example/pdf-unlabelled", "not_html"),
    ("http://bin.example/html-unlabelled", "ok"),
    ("http://r.example/loop-a", "redirect_loop"),
    ("http://r.example/chain0", "too_many_redirects"),
    ("http://r.example/chain4", "http_4xx"),                  # 4 hops, then chain8 is a 404
    ("http://r.example/to-wiki", "wikipedia_after_redirect"),
    ("http://r.example/to-reddit", "blocked_after_redirect"),
    ("http://r.example/to-pdf", "non_page_after_redirect"),
    ("http://r.example/to-metadata", "private_address"),
    ("http://r.example/to-loopback", "private_address"),
    ("http://r.example/to-ftp", "bad_redirect"),
    ("http://r.example/ok", "ok"),
    ("http://cookie.example/article", "ok"),                  # same URL twice, but with a cookie: not a loop
    ("http://robots.example/private/page", "robots_disallowed"),
    ("http://robots.example/public", "ok"),
    ("http://robots-500.example/page", "robots_unreachable"),  # RFC 9309: 5xx robots.txt = disallow all
    ("http://robots-403.example/page", "ok"),                 # RFC 9309: 4xx robots.txt = no rules
    ("ftp://ok.example/file", "bad_url"),
])
def test_each_failure_class_has_its_outcome(web, path, outcome):
    result = _fetch(web, path)
    assert result.outcome == outcome, result
    assert result.outcome == "ok" or result.outcome in DROP_REASONS
    assert (result.page is not None) == (outcome == "ok")


def test_ok_page_fields(web):
    page = _fetch(web, "http://r.example/ok").page
    assert page.final_url == "http://ok.example/" and page.status == 200
    assert page.content_type == "text/html" and page.body == PAGE.encode() and page.encoding == "utf-8"
    assert page.link.url == "http://r.example/ok"
    gz = _fetch(web, "http://ok.example/gz").page
    assert gz.body == PAGE.encode()                                   # stored decoded


def test_charsets_never_crash_and_body_stays_bytes(web):
    bad = _fetch(web, "http://cs.example/bad-utf8").page
    assert bad.body == b"<html><body>caf\xe9 \xff\xfe</body></html>" and bad.encoding == "utf-8"
    bogus = _fetch(web, "http://cs.example/bogus").page
    assert bogus.encoding == ""                                       # unknown label, not valid UTF-8
    assert _fetch(web, "http://cs.example/meta").page.encoding == "cp1251"


def test_500_is_retried_then_given_up(web):
    n = len(_requests_to(web, "e.example", "/500"))
    result = _fetch(web, "http://e.example/500", max_retries=2)
    assert result.outcome == "http_5xx"
    assert len(_requests_to(web, "e.example", "/500")) - n == 3       # first try + 2 retries


def test_503_then_ok(web):
    assert _fetch(web, "http://e.example/503-once/a").outcome == "ok"
    assert len(_requests_to(web, "e.example", "/503-once/a")) == 2


def test_429_retry_after_is_honoured(web):
    result = _fetch(web, "http://e.example/429-once/a", max_retries=1)
    assert result.outcome == "ok"
    (t1, *_), (t2, *_) = _requests_to(web, "e.example", "/429-once/a")
    assert 1.0 <= t2 - t1 < 2.0                                       # Retry-After: 1


def test_slow_trickle_hits_the_page_timeout(web):
    t0 = time.monotonic()
    result = _fetch(web, "http://slow.example/trickle")
    took = time.monotonic() - t0
    assert result.outcome == "timeout" and "page timeout" in result.detail
    assert 0.55 < took < 1.5                                          # page_timeout 0.6 (+ one read at most)


@pytest.mark.parametrize("path", ["/hang", "/hang-body"])
def test_silent_server_hits_the_read_timeout(web, path):
    t0 = time.monotonic()
    assert _fetch(web, f"http://slow.example{path}").outcome == "timeout"
    assert time.monotonic() - t0 < 1.5                               # read_timeout 0.3


def test_robots_that_hang_cost_one_timeout_per_host(web):
    cfg = _cfg(web)
    links = [Link(f"http://robots-hang.example/page?{i}", "robots-hang.example", 3, (), 0) for i in range(4)]
    t0 = time.monotonic()
    results = [r.outcome for _, r in fetch_host(links, cfg, session=make_session(cfg))]
    assert results == ["robots_unreachable"] * 4
    assert len(_requests_to(web, "robots-hang.example", "/robots.txt")) == 1
    assert not [e for e in _requests_to(web, "robots-hang.example") if e[3] != "/robots.txt"]
    assert time.monotonic() - t0 < 2.0


def test_robots_read_once_per_host(web):
    cfg = _cfg(web)
    n = len(_requests_to(web, "robots.example", "/robots.txt"))
    links = [Link(u, "robots.example", 3, (), 0) for u in
             ("http://robots.example/public", "http://robots.example/private/page", "http://robots.example/public?2")]
    outcomes = {l.url: r.outcome for l, r in fetch_host(links, cfg, session=make_session(cfg))}
    assert outcomes == {"http://robots.example/public": "ok", "http://robots.example/private/page": "robots_disallowed",
                        "http://robots.example/public?2": "http_4xx"}
    assert len(_requests_to(web, "robots.example", "/robots.txt")) == n + 1
    assert not _requests_to(web, "robots.example", "/private/page")   # never requested


def _closing_server(reset: bool):
    """A TCP server that accepts and hangs up (with a RST if `reset`). Returns (port, stop)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.1)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
        srv.close()
    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1], stop


@pytest.mark.parametrize("kind", ["refused", "reset"])
def test_dead_host_trips_the_circuit_breaker(kind):
    if kind == "refused":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port, stop = s.getsockname()[1], None
        s.close()                                                     # nothing listens there now
    else:
        port, stop = _closing_server(reset=True)
    try:
        cfg = FetchConfig(allow_private=True, min_delay=0.0, connect_timeout=1.0, read_timeout=1.0,
                          circuit_breaker=3)
        host = f"127.0.0.1:{port}"
        links = [Link(f"http://{host}/{i}", "127.0.0.1", 3, (), 0) for i in range(6)]
        t0 = time.monotonic()
        results = list(fetch_host(links, cfg, session=make_session(cfg)))
        assert [r.outcome for _, r in results] == ["connection_error"] * 3 + ["host_unreachable"] * 3
        assert not any(r.network for _, r in results[3:])
        assert time.monotonic() - t0 < 3
    finally:
        if stop:
            stop.set()


def test_dns_error_without_proxy():
    cfg = FetchConfig(min_delay=0.0)
    assert fetch_one(make_session(cfg), "http://no-such-host.invalid/", cfg).outcome == "dns_error"


def _gaps(web, host):
    ts = [e[0] for e in _requests_to(web, host)]
    return [b - a for a, b in zip(ts, ts[1:])]


def test_crawl_delay_from_robots_is_honoured(web):
    cfg = _cfg(web, min_delay=0.05)
    links = [Link(f"http://crawl-delay.example/{i}", "crawl-delay.example", 3, (), 0) for i in range(2)]
    assert [r.outcome for _, r in fetch_host(links, cfg, session=make_session(cfg))] == ["ok", "ok"]
    assert len(_gaps(web, "crawl-delay.example")) == 2 and min(_gaps(web, "crawl-delay.example")) >= 0.4


def test_split_host_key_waits_n_keys_times_the_delay(web):
    cfg = _cfg(web, min_delay=0.1, robots=False)
    links = [Link(f"http://split.example/{i}", "split.example", 3, (), 0) for i in range(2)]
    assert [r.outcome for _, r in fetch_host(links, cfg, session=make_session(cfg), n_keys=3)] == ["ok", "ok"]
    assert min(_gaps(web, "split.example")) >= 0.3 * 0.9   # start to start at the client; jitter at the server


def test_pacer_remembers_a_host_as_long_as_its_delay():
    """A split host asks delay x n_keys, which can exceed ten minutes; forgetting it after ten idle minutes would
    let its next request out early."""
    from crawl.fetch.http import Pacer
    import threading
    import time
    pacer = Pacer(max_hosts=1)
    # (A host new to a Pacer waits its delay first, so the 900 s host's state is set up directly.)
    pacer._hosts["giant.example#0/900"] = [threading.Semaphore(1), time.monotonic() - 700, 0]   # ended 700 s ago
    pacer.longest = 900.0
    start = time.monotonic()
    with pacer.slot("other.example", 0.05):                   # a new host: the table is full, idle ones go
        pass
    assert "giant.example#0/900" in pacer._hosts and time.monotonic() - start < 5
