"""One wall-clock deadline bounds a page's whole exchange, whatever the server does with its socket: headers that
trickle, interim responses that never end, a robots.txt that does either. Each server here is a raw TCP socket
that logs when a connection opened and when the client let go of it; the bounds are asserted from that log."""
import socket
import threading
import time

import pytest

from core.records import Link
from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import fetch_host, fetch_one, make_session

PAGE = b"<!doctype html><html><body><p>Hello.</p></body></html>"


class RawServer:
    """127.0.0.1 TCP server: `behave(conn, request_bytes, stop)` per connection; `log` holds, per connection,
    [opened, closed-by-client or None, first request line]. A behaviour gives up by itself after `limit` seconds,
    so code that does not bound its waits fails the timing assertions instead of hanging the suite."""

    def __init__(self, behave, limit: float = 8.0):
        self.behave, self.limit, self.log, self.stop = behave, limit, [], threading.Event()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.srv.settimeout(0.05)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        self.srv.close()

    def _serve(self, conn):
        entry = [time.monotonic(), None, b""]
        self.log.append(entry)
        conn.settimeout(2)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            entry[2] = data.split(b"\r\n", 1)[0]
            self.behave(conn, data, lambda: self.stop.is_set() or time.monotonic() - entry[0] > self.limit)
        except OSError:
            pass                        # the client hung up: that is the moment we log
        finally:
            entry[1] = time.monotonic()
            conn.close()

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.stop.set()


def drip(conn, data: bytes, stop, every: float = 0.05):
    """Send `data` a byte at a time: never silent for read_timeout, never finished either."""
    for b in data:
        if stop():
            return
        conn.sendall(bytes([b]))
        time.sleep(every)


def trickle_headers(conn, request, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n")
    drip(conn, b"X-Filler: " + b"a" * 100_000, stop)


def endless_continue(conn, request, stop):
    while not stop():
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.05)


def slow_status_line(conn, request, stop):
    drip(conn, b"HTTP/1.1 200 OK" + b" " * 100_000, stop)


def robots_trickles(conn, request, stop):
    if b"/robots.txt" in request:
        trickle_headers(conn, request, stop)
    else:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(PAGE) + PAGE)


def _cfg(**kw):
    base = dict(allow_private=True, min_delay=0.0, connect_timeout=1.0, read_timeout=0.3, page_timeout=0.6,
                robots=False, robots_timeout=0.4)
    base.update(kw)
    return FetchConfig(**base)


@pytest.mark.parametrize("behave", [trickle_headers, endless_continue, slow_status_line])
def test_headers_that_never_end_hit_the_page_deadline(behave):
    server = RawServer(behave)
    try:
        cfg = _cfg()
        t0 = time.monotonic()
        result = fetch_one(make_session(cfg), server.url("/page"), cfg)
        took = time.monotonic() - t0
        time.sleep(0.3)                                         # let the server notice the hang-up
    finally:
        server.close()
    assert result.outcome == "timeout" and "page timeout" in result.detail, result
    assert took < 1.2
    (opened, closed, line), = server.log                        # one connection, no second try after the cut
    assert line == b"GET /page HTTP/1.1"
    assert closed is not None and closed - opened < 0.6 + 0.4   # the server saw the client let go in time


def test_trickling_robots_txt_is_bounded_for_every_url_of_the_host():
    server = RawServer(robots_trickles)
    try:
        cfg = _cfg(robots=True, page_timeout=5.0)
        links = [Link(server.url(f"/p{i}"), "127.0.0.1", 3, (), 0) for i in range(3)]
        t0 = time.monotonic()
        results = [r.outcome for _, r in fetch_host(links, cfg, session=make_session(cfg))]
        took = time.monotonic() - t0
        time.sleep(0.3)
    finally:
        server.close()
    assert results == ["robots_unreachable"] * 3                # RFC 9309: unreachable robots.txt = disallow
    robots = [e for e in server.log if b"/robots.txt" in e[2]]
    assert len(robots) == 1 and robots[0][1] - robots[0][0] < 0.4 + 0.4
    assert len(server.log) == 1 and took < 1.5                   # no page requested, one bounded robots wait



def test_waiting_for_another_threads_robots_fetch_is_bounded():
    """A thread that finds robots.txt already being fetched by another waits at most `wait` seconds."""
    from crawl.fetch.robots import RobotsCache
    robots, release = RobotsCache("webtext"), threading.Event()

    def stuck(url):
        release.wait(5)
        return 200, b"", "", ""
    owner = threading.Thread(target=robots.verdict, args=("http://stuck.example/a", stuck))
    owner.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    verdict = robots.verdict("http://stuck.example/b", stuck, wait=0.2)
    took = time.monotonic() - t0
    release.set()
    owner.join()
    assert verdict is not None and verdict[0] == "timeout" and took < 0.5
