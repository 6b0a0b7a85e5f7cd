"""Refuse to fetch private, loopback, link-local and other non-public addresses (SSRF), before and while connecting.

A crawler fed with URLs from the internet must not be turned against its own network: `http://169.254.169.254/`
(cloud metadata), `http://localhost:6379/`, `http://10.0.0.1/admin`, `http://10.0.0.1.nip.io/`, a public name
that resolves to 127.0.0.1, or a redirect to any of those. Which addresses and names are public is decided in
crawl/fetch/addresses.py. The checks, all skipped when `allow_private` is set (tests that fetch 127.0.0.1 directly):

0. Every hop's URL is normalized once (`sendable_url`) and that exact string is both checked and sent; a URL
   whose authority two parsers read differently (`http://evil.example\\@good.example/`: urlsplit sees good.example,
   urllib3 connects to evil.example) is refused rather than guessed at; so is a host that is not a valid DNS name
   (the link stage's normalize_url).
1. Before a request (every redirect hop, robots.txt too), whatever the route: an IP-literal host (any spelling)
   must be public; names that always mean this machine or a private network (RFC 6761 `localhost`, RFC 6762
   `.local` and the private-use TLDs of its appendix G, `.internal`, `.home.arpa`, cloud metadata names, dotless
   names that only a search domain can resolve, names that spell a non-public address the way wildcard-DNS
   services read them: `127.0.0.1.nip.io`, `10-0-0-1.sslip.io`, `7f000001.nip.io`, `--1.sslip.io`) are refused.
2. A name is then resolved here with `getaddrinfo` (a bounded wait: `dns_timeout`), and every address it resolves
   to must be public. Without a proxy a name that does not resolve is a `dns_error`. With an HTTP proxy the
   request goes to the proxy for the checked address (`http://93.184.216.34/...` with `Host: example.com`), so
   the proxy cannot pick another one; a name that does not resolve here (proxy-only DNS, or the offline tests),
   or has no answer within half the wait, goes to the proxy by name, and then only the checks of 0 and 1 have
   been made: the proxy resolves it and must refuse non-public answers itself (docs/scaling.md says so to the
   user). A late answer is checked for the host's later requests. `pin_dns` makes a name that does not resolve
   here a `dns_error` also with a proxy, and pins direct requests as well.
3. At connect time (no proxy): `GuardedAdapter` checks the address the socket actually connected to, before a
   byte is sent. That closes the gap where DNS answers differently the second time (DNS rebinding).
"""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import urllib3

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from crawl.fetch.addresses import (  # noqa: F401  (re-exported: the guard's vocabulary)
    IPAddress, LOCAL_SUFFIXES, METADATA_NAMES, ip_literal, local_name, non_public_kind, spelled_address)
from crawl.fetch.deadline import WATCHDOG

_AMBIGUOUS = re.compile(r"[\\\x00-\x20\x7f]")    # backslash, controls, spaces: parsers split these differently


class PrivateAddressError(Exception):
    """Raised from inside a connection attempt whose peer is not a public address."""


TRANSIENT_DNS = frozenset({socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11)})


class Resolver:
    """getaddrinfo with a small time-bounded cache and a bounded wait: a host's URLs are checked one after another,
    one lookup each `ttl` seconds; a lookup that does not answer within `timeout` is a transient failure for the
    caller, and keeps running on one of `threads` lookup threads: callers for that host wait on it (never a second
    lookup beside it), and its answer, when it comes, is cached. Definitive failures (no such name) are cached like
    answers; transient ones (EAI_AGAIN, timeout) are not, so a DNS hiccup costs one URL a retry, not the whole host.
    `lookup` is getaddrinfo; tests pass a stand-in resolver."""

    def __init__(self, ttl: float = 300.0, max_entries: int = 100_000, timeout: float = 10.0, threads: int = 8,
                 lookup: Callable = socket.getaddrinfo):
        self.ttl, self.max_entries, self.timeout, self.lookup = ttl, max_entries, timeout, lookup
        self._cache: Dict[str, Tuple[float, List[str], str]] = {}
        self._pending: Dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dns")

    def resolve(self, host: str, timeout: Optional[float] = None, cache_transient: bool = False
                ) -> Tuple[List[str], str]:
        """(addresses, "") or ([], error text); error text starts with "transient" when asking again may help.
        `cache_transient`: remember a transient answer (EAI_AGAIN) too: behind a proxy it means no such name here."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(host)
            if hit and now - hit[0] < self.ttl:
                return hit[1], hit[2]
            fut, new = self._pending.get(host), False
            if fut is not None and fut.done():   # answered, its callback not run yet: never reuse a transient answer
                fut = None
            if fut is None:
                fut = self._pending[host] = self._pool.submit(self.lookup, host, None, proto=socket.IPPROTO_TCP)
                new = True
        if new:   # outside the lock: a lookup that is already done runs the callback right here
            fut.add_done_callback(lambda f: self._settle(host, f, now, cache_transient))
        wait = self.timeout if timeout is None else max(0.01, min(timeout, self.timeout))
        try:
            fut.result(timeout=wait)
        except FutureTimeout:
            return [], f"transient: no DNS answer within {wait:.2f}s"
        except BaseException:
            pass
        return _answer(fut)

    def _settle(self, host: str, fut: Future, asked: float, cache_transient: bool) -> None:
        try:
            addrs, err = _answer(fut)
        except BaseException:   # a stand-in lookup's own error: the caller sees it, nothing is cached
            addrs, err = [], "transient: lookup failed"
            cache_transient = False
        with self._lock:
            if self._pending.get(host) is fut:
                del self._pending[host]
            if err.startswith("transient") and not cache_transient:
                return
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[host] = (asked, addrs, err)


def _answer(fut: Future) -> Tuple[List[str], str]:
    """A finished lookup as (addresses, "") or ([], error text)."""
    try:
        return sorted({info[4][0] for info in fut.result()}), ""
    except socket.gaierror as e:
        return [], f"{'transient: ' if e.errno in TRANSIENT_DNS else ''}{type(e).__name__}: {e}"
    except (UnicodeError, OSError) as e:
        return [], f"{type(e).__name__}: {e}"


def sendable_url(url: str, normalize: Callable[[str], Optional[str]]) -> Tuple[Optional[str], str]:
    """(the one URL to check and send, "") or (None, why not). `normalize` is the link stage's normalize_url; its
    output is then re-read by urllib3 (what requests sends) and must mean the same host, port and path."""
    try:
        raw = urlsplit(url)
    except ValueError as e:
        return None, f"unparsable URL: {e}"
    if _AMBIGUOUS.search(raw.netloc) or raw.netloc.count("@") > 1:
        return None, f"ambiguous authority {raw.netloc[:100]!r}"
    out = normalize(url)
    if out is None:
        return None, "not an http(s) URL"
    try:
        ours, theirs = urlsplit(out), urllib3.util.parse_url(out)
        same = (ours.hostname or "") == (theirs.host or "").strip("[]").lower() and ours.port == theirs.port \
            and (ours.path or "/") == (theirs.path or "/")
    except (ValueError, urllib3.exceptions.LocationParseError) as e:
        return None, f"unparsable URL: {e}"
    if not same:
        return None, f"parsers disagree on {out[:100]!r}"
    return out, ""


def vet_host(host: str, allow_private: bool, via_proxy: bool, resolver: Resolver, pin: bool = False,
             timeout: Optional[float] = None, resolve_here: bool = True
             ) -> Tuple[Optional[Tuple[str, str]], List[str]]:
    """((reason, detail) if a request to `host` must not be made, else None; the checked addresses to send to,
    or [] when the name goes out as it is). Reasons: "private_address", "dns_error". A name is resolved here and
    every address checked, with or without a proxy; behind a proxy (`pin` off) a name that does not resolve here
    goes to the proxy by name ([]); `resolve_here` False leaves every name to the proxy (fetch.proxy_dns_only).
    With allow_private nothing is refused and names are resolved only to pin."""
    ip = ip_literal(host)
    if ip is not None:
        kind = None if allow_private else non_public_kind(ip)
        return (("private_address", f"{host} is {kind}") if kind else None), [str(ip)]
    local = None if allow_private else local_name(host)
    if local:
        return ("private_address", f"{host} is {local}"), []
    if allow_private and not pin:
        return None, []
    by_proxy = via_proxy and not pin
    if by_proxy and not resolve_here:
        return None, []
    if by_proxy:    # a name with no answer goes to the proxy by name: leave it half the time, not none
        timeout = (resolver.timeout if timeout is None else timeout) / 2
    addrs, err = resolver.resolve(host, timeout, cache_transient=by_proxy)
    if not addrs:
        if by_proxy:
            return None, []     # proxy-only DNS: the proxy resolves it (the guarantee then: docs/scaling.md)
        return ("dns_error", f"{host}: {err or 'no address'}"), []
    for addr in addrs if not allow_private else ():
        kind = non_public_kind(ipaddress.ip_address(addr.split("%", 1)[0]))
        if kind:
            return ("private_address", f"{host} resolves to {addr} ({kind})"), []
    return None, addrs


def check_host(host: str, allow_private: bool, via_proxy: bool, resolver: Resolver) -> Optional[Tuple[str, str]]:
    """(reason, detail) if a request to `host` must not be made: "private_address" or "dns_error"; else None."""
    return vet_host(host, allow_private, via_proxy, resolver)[0]


def pinned(url: str, addr: str) -> str:
    """`url` with its host replaced by the checked address (the caller sends the name as the Host header)."""
    parts = urlsplit(url)
    host = f"[{addr}]" if ":" in addr else addr
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, parts.query, ""))


# ------------------------------------------------------------------ connect-time guard (no proxy)
def _check_peer(sock: socket.socket, host: str) -> None:
    try:
        addr = sock.getpeername()[0]
    except OSError:
        return   # not connected: the request fails on its own
    kind = non_public_kind(ipaddress.ip_address(addr.split("%", 1)[0]))
    if kind:
        sock.close()
        raise PrivateAddressError(f"{host} connected to {addr} ({kind})")


class _WatchedHTTPConnection(HTTPConnection):
    """Every socket it opens or reuses is attached to the fetch thread's deadline (crawl/fetch/deadline.py)."""
    guard = False

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if self.guard:
            _check_peer(sock, self.host)
        WATCHDOG.attach(sock)
        return sock

    def request(self, *args, **kwargs):
        if self.sock is not None:       # a pooled connection being reused
            WATCHDOG.attach(self.sock)
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _GuardedHTTPConnection(_WatchedHTTPConnection):
    guard = True


class _GuardedHTTPSConnection(_WatchedHTTPSConnection):
    guard = True


def _pool(base, conn):
    return type(f"_{conn.__name__.strip('_')}Pool", (base,), {"ConnectionCls": conn})


WATCHED_POOLS = {"http": _pool(HTTPConnectionPool, _WatchedHTTPConnection),
                 "https": _pool(HTTPSConnectionPool, _WatchedHTTPSConnection)}
GUARDED_POOLS = {"http": _pool(HTTPConnectionPool, _GuardedHTTPConnection),
                 "https": _pool(HTTPSConnectionPool, _GuardedHTTPSConnection)}


class FetchAdapter(HTTPAdapter):
    """HTTPAdapter whose connections are watched by the page deadline, and, when `guarded` (direct connections),
    refuse non-public peers (raises PrivateAddressError). A request sent to a pinned address (an IP-literal URL with
    the name in its Host header) keeps the name for TLS: SNI and certificate checks are made against it."""

    def __init__(self, guarded: bool = False, **kwargs):
        self.guarded = guarded
        super().__init__(**kwargs)

    def _pools(self):
        return GUARDED_POOLS if self.guarded else WATCHED_POOLS

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools()

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pools()
        return manager

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = request.headers.get("Host")
        if host_params["scheme"] == "https" and name and ip_literal(host_params["host"]) is not None:
            name = urlsplit("//" + name).hostname
            pool_kwargs["server_hostname"] = pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


class GuardedAdapter(FetchAdapter):
    def __init__(self, **kwargs):
        super().__init__(guarded=True, **kwargs)
