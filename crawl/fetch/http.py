"""HTTP plumbing for crawl/fetch/fetcher.py: per-host pacing, exception -> outcome, Retry-After, stale-connection retry."""
from __future__ import annotations

import http.client
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Tuple

import requests
import urllib3

from crawl.fetch.content import BodyError
from crawl.fetch.safety import PrivateAddressError


class Pacer:
    """Per-host spacing shared by the threads of one worker: at most `concurrency` requests in flight per host,
    and each starts no earlier than `delay` after the previous response on that host ended."""

    def __init__(self, concurrency: int = 1, max_hosts: int = 100_000):
        self.concurrency, self.max_hosts = concurrency, max_hosts
        self.longest = 0.0              # the longest delay asked for: a host idle for less may not be forgotten
        self._hosts = {}                # host -> [semaphore, last response end, requests in flight]
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, host: str, delay: float, from_start: bool = False):
        """Wait for `host`'s turn. `from_start`: space the moments this slot was granted instead of end-to-start
        (a rate: a split host's per-key budget; the caller may move the start to when its request went out, after
        any inner slot's wait). The host's own entry, taken inside it on the same worker, still
        spaces each request from the last response's end; a wait there does not push the key's budget back, or
        every collision between keys would be lost for good and the split host would run late."""
        with self._lock:
            self.longest = max(self.longest, delay)
            entry = self._hosts.get(host)
            if entry is None:
                if len(self._hosts) >= self.max_hosts:
                    # Forget hosts idle for ten minutes, or for longer than any delay (a split giant host asks
                    # delay x n_keys, which can be more than ten minutes): forgetting one sooner would let its
                    # next request go out early.
                    cutoff = time.monotonic() - max(600.0, 2 * self.longest)
                    self._hosts = {h: e for h, e in self._hosts.items() if e[2] or e[1] > cutoff}
                    self.max_hosts = max(self.max_hosts, 2 * len(self._hosts))   # amortized: no scan per host
                # A host new to this Pacer may have been fetched a moment ago by another instance: the failed
                # attempt of a bundle that a runner now retries here, or the key's previous worker. So its first
                # request waits the delay too (one delay per host per instance: nothing against days of crawl).
                entry = self._hosts[host] = [threading.Semaphore(self.concurrency), time.monotonic(), 0]
            entry[2] += 1
        entry[0].acquire()
        started = [None]
        try:
            wait = entry[1] + delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            started[0] = time.monotonic()
            yield started       # a caller holding several slots sets started[0] to when its request really went out
        finally:
            entry[1] = started[0] if from_start and started[0] is not None else time.monotonic()
            entry[0].release()
            with self._lock:
                entry[2] -= 1


def _chain(e: BaseException, limit: int = 10):
    """An exception and what it wraps: requests wraps urllib3 (in args or __cause__), which wraps socket errors."""
    for _ in range(limit):
        if e is None:
            return
        yield e
        e = e.__cause__ or e.__context__ or (e.args[0] if e.args and isinstance(e.args[0], BaseException) else None)


def classify(e: BaseException) -> Tuple[str, str]:
    """Outcome for an exception raised while requesting or reading."""
    detail = f"{type(e).__name__}: {e}"[:300]
    if isinstance(e, PrivateAddressError):
        return "private_address", str(e)
    if isinstance(e, BodyError):
        return e.reason, e.detail
    if isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError)):
        return "timeout", detail
    if isinstance(e, requests.exceptions.SSLError):
        return "tls_error", detail
    if isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                      requests.exceptions.MissingSchema, urllib3.exceptions.LocationParseError)):
        return "bad_url", detail
    if any(isinstance(c, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead)) for c in _chain(e)):
        return "connection_error", f"body cut short by the server: {detail}"[:300]
    if isinstance(e, requests.exceptions.ConnectionError):
        if any(isinstance(c, (urllib3.exceptions.NameResolutionError, socket.gaierror)) for c in _chain(e)):
            return "dns_error", detail
        return "connection_error", detail
    if isinstance(e, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
                      http.client.HTTPException, OSError)):
        return "connection_error", detail
    return "fetch_error", detail


def now() -> float:
    """Wall time rounded to the microsecond, so it survives a WARC-Date round trip unchanged."""
    return datetime.fromtimestamp(time.time(), timezone.utc).timestamp()


def status_outcome(status: int) -> str:
    return "http_429" if status == 429 else "http_4xx" if 400 <= status < 500 else \
        "http_5xx" if status >= 500 else "bad_redirect" if 300 <= status < 400 else "fetch_error"


def stale(e: BaseException) -> bool:
    """The peer closed a kept-alive connection just as we reused it (no response byte came back)."""
    return any(isinstance(c, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for c in _chain(e))


class FetchSession(requests.Session):
    """The fetcher's Session: it never reads a body itself. Asked not to follow redirects, requests still prepares
    the next hop for `Response.next`, and reads the whole 3xx body first to free the connection (`resp.content`:
    no size cap, gzip inflated without bound, on until the read timeout). We follow redirects by hand, so there is
    no next hop to prepare: a redirect's body is never read, its connection is closed instead (crawl/fetch/
    exchange.py), and every body we do read goes through content.read_body's caps."""

    def get_redirect_target(self, resp):
        return None


def send(session: requests.Session, url: str, jar, timeout, deadline: float, headers=None) -> requests.Response:
    """GET without following redirects; one immediate second try when a pooled connection turned out stale, as
    browsers do (a server closing an idle keep-alive connection races with our reuse of it), unless the deadline
    has passed (the watchdog closing the socket looks the same)."""
    try:
        return get_exact(session, url, jar, timeout, headers)
    except requests.exceptions.ConnectionError as e:
        if not stale(e) or time.monotonic() >= deadline:
            raise
    return get_exact(session, url, jar, timeout, headers)


def get_exact(session: requests.Session, url: str, jar, timeout, headers=None) -> requests.Response:
    """`session.get(url, stream=True, allow_redirects=False, cookies=jar, ...)`, without Session.request's
    per-request merging for the fetcher's own session: its settings never change once made (make_session), its own
    cookie jar stays empty (the policy refuses every cookie) and trust_env is off, so the merged headers, proxies
    and TLS settings are the session's own plus `headers`. That merging cost ~0.15 ms of CPU per request (requests
    2.34 checks each setting against typing Protocols), ~15% of the fetch's CPU. Any other session: plain get."""
    if not isinstance(session, FetchSession) or len(session.cookies) or session.trust_env or session.auth \
            or session.params or any(session.hooks.values()):
        return session.get(url, stream=True, allow_redirects=False, cookies=jar, timeout=timeout, headers=headers)
    merged = requests.structures.CaseInsensitiveDict(session.headers)
    if headers:
        merged.update(headers)
    prep = requests.PreparedRequest()
    prep.prepare(method="GET", url=url, headers=merged, cookies=jar)
    return session.send(prep, stream=True, allow_redirects=False, timeout=timeout, verify=session.verify,
                        cert=session.cert, proxies=dict(session.proxies))
