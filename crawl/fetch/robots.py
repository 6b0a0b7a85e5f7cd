"""robots.txt: fetched once per origin, cached, parsed with Protego (Scrapy's parser), judged by RFC 9309.

What a fetch of /robots.txt means (RFC 9309 sec. 2.3.1, which is also Google's documented behaviour):
- 2xx: parse it and obey it, including Crawl-delay: its first `robots_max_bytes` (500 KiB, RFC 9309 2.5) once
  decoded, however large or compressed the whole. A 2xx whose body cannot be read at all (broken encoding) is a
  server error: complete disallow, as for 5xx. Its body is read through the page's caps and deadline.
- 3xx: followed up to 5 hops by the caller's fetch function (each hop address-checked); a robots.txt that cannot be
  reached through its redirects counts as unavailable (4xx).
- 4xx other than 429, including 401/403 ("unavailable"): no rules, everything may be crawled. (Older crawlers
  read 401/403 as "disallow all"; the RFC and Google do not.) The body of a 3xx, 4xx or 5xx is never read.
- 429, 5xx, or a timeout ("unreachable"): assume complete disallow; the host's URLs end as "robots_unreachable".
  Cached like a parsed file, so a robots.txt that hangs costs one timeout per host, not one per URL.
- DNS failure, refused or reset connection, TLS failure: the host itself is down, not its robots.txt. Not cached:
  the URL ends with that network outcome (counted by the fetcher's circuit breaker) and the next URL tries again.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from protego import Protego

NETWORK_FAILURES = frozenset({"dns_error", "connection_error", "tls_error", "private_address", "host_unreachable"})


class RobotsFile(NamedTuple):
    """What we know about one origin's robots.txt."""
    kind: str                        # "rules", "allow_all" or "unreachable"
    parser: Optional[Protego] = None
    detail: str = ""


# fetch(url) -> (status or 0, body, failure reason or "", detail). Given by crawl/fetch/fetcher.py (same session, proxy,
# address checks, politeness), so this module never opens a connection itself.
RobotsGetter = Callable[[str], Tuple[int, bytes, str, str]]


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


def judge(status: int, body: bytes, failure: str, detail: str) -> Optional[RobotsFile]:
    """RFC 9309 reading of one robots.txt fetch; None means "network failure, do not cache, retry later".
    "deadline" means the asking page ran out of time first: that says nothing about the robots.txt."""
    if failure in NETWORK_FAILURES or failure == "deadline":
        return None
    if failure == "timeout":
        return RobotsFile("unreachable", detail=f"robots.txt timed out: {detail}")
    if failure and 200 <= status < 300:
        # The server has a robots.txt but it could not be read at all (a broken or unknown Content-Encoding): a
        # server error, not a missing file, so RFC 9309 2.3.1.4, complete disallow. (A file over our size caps is
        # never this: it arrives cut to its first robots_max_bytes, RFC 9309 2.5, and is obeyed.)
        return RobotsFile("unreachable", detail=f"robots.txt HTTP {status} unreadable: {failure}: {detail}")
    if failure:     # redirect trouble (RFC 9309 2.3.1.2: may be taken as unavailable, like a 4xx)
        return RobotsFile("allow_all", detail=f"robots.txt {failure}: {detail}")
    if 200 <= status < 300:
        # A UTF-8 BOM (Windows editors add one) would make the first line, often `User-agent: *`, unknown.
        text = body.decode("utf-8", errors="replace").removeprefix("\ufeff")
        try:
            return RobotsFile("rules", Protego.parse(text))
        except Exception as e:      # a parser bug must not stop the crawl; a file we cannot read = unavailable
            return RobotsFile("allow_all", detail=f"robots.txt unparsable: {type(e).__name__}: {e}")
    if status == 429 or status >= 500:
        return RobotsFile("unreachable", detail=f"robots.txt answered HTTP {status}")
    return RobotsFile("allow_all", detail=f"robots.txt answered HTTP {status}")


class RobotsCache:
    """Per-origin robots.txt verdicts, shared by the fetch threads of one worker.

    Two threads asking for the same origin at once (shards of one giant host) share a single fetch. The cache is
    an LRU of `max_entries` origins; an evicted origin is simply fetched again.
    """

    def __init__(self, user_agent: str, max_entries: int = 50_000):
        self.user_agent, self.max_entries = user_agent, max_entries
        self._files: "OrderedDict[str, Future]" = OrderedDict()
        self._lock = threading.Lock()

    def _file(self, url: str, fetch: RobotsGetter, wait: Optional[float]) -> Tuple[Optional[RobotsFile], str, str]:
        """(robots file, failure reason, detail); the file is None after a network failure. A thread waiting for
        another's fetch of the same file waits at most `wait` seconds (then: "timeout", not cached)."""
        key = robots_url(url)
        with self._lock:
            fut = self._files.get(key)
            owner = fut is None
            if owner:
                fut = self._files[key] = Future()
                if len(self._files) > self.max_entries:
                    self._files.popitem(last=False)
            else:
                self._files.move_to_end(key)
        if owner:
            try:
                status, body, failure, detail = fetch(key)
                fut.set_result((judge(status, body, failure, detail), failure, detail))
            except BaseException as e:      # never leave waiters hanging
                fut.set_result((None, "fetch_error", f"robots.txt: {type(e).__name__}: {e}"))
            if fut.result()[0] is None:
                with self._lock:
                    if self._files.get(key) is fut:
                        del self._files[key]     # network failure: the next URL asks again
            return fut.result()
        try:
            return fut.result(timeout=wait)
        except FutureTimeout:
            return None, "timeout", f"waited {wait:.0f}s for another thread's fetch of {key}"

    def verdict(self, url: str, fetch: RobotsGetter, wait: Optional[float] = None) -> Optional[Tuple[str, str]]:
        """None if `url` may be fetched, else (outcome, detail): robots_disallowed, robots_unreachable, or the
        network failure that kept us from reading robots.txt ("deadline": the page's own time ran out)."""
        robots, failure, detail = self._file(url, fetch, wait)
        if robots is None:
            return failure or "connection_error", f"robots.txt: {detail}"
        if robots.kind == "unreachable":
            return "robots_unreachable", robots.detail
        if robots.kind == "rules" and not robots.parser.can_fetch(url, self.user_agent):
            return "robots_disallowed", f"disallowed by {robots_url(url)}"
        return None

    def crawl_delay(self, url: str) -> float:
        """Crawl-delay for our agent from an already cached robots.txt (0 if none or not fetched yet)."""
        with self._lock:
            fut = self._files.get(robots_url(url))
        if fut is None or not fut.done():
            return 0.0
        robots = fut.result()[0]
        if robots is None or robots.parser is None:
            return 0.0
        try:
            return float(robots.parser.crawl_delay(self.user_agent) or 0.0)
        except (TypeError, ValueError):
            return 0.0
