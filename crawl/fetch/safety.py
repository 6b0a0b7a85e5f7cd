"""Refuse to fetch private, loopback, link-local and other non-public addresses (SSRF), before and while connecting.

A crawler fed with URLs from the internet must not be turned against its own network: `http://169.254.169.254/`
(cloud metadata), `http://localhost:6379/`, `http://10.0.0.1/admin`, a public name that resolves to 127.0.0.1, or a
redirect to any of those. Two checks, both skipped when `allow_private` is set (the loopback demo):

0. Every hop's URL is normalized once (`sendable_url`) and that exact string is both checked and sent; a URL
   whose authority two parsers read differently (`http://evil.example\\@good.example/`: urlsplit sees good.example,
   urllib3 connects to evil.example) is refused rather than guessed at.
1. Before a request (every redirect hop), whatever the route: names that always mean this machine or a private
   network (RFC 6761 `localhost`, RFC 6762 `.local` and the private-use TLDs of its appendix G, `.internal`,
   `.home.arpa`, cloud metadata names, dotless names that only a search domain can resolve) are refused. An
   IP-literal host is checked as is; a name is resolved with `getaddrinfo` (a bounded wait) and every address it
   resolves to must be public. With an HTTP proxy the proxy resolves names, so only the two checks above apply,
   unless `pin_dns` is set: then the name is resolved here and the request goes to the proxy for the checked
   address (`http://93.184.216.34/...` with `Host: example.com`), so the proxy cannot pick another one.
2. At connect time (no proxy): `GuardedAdapter` checks the address the socket actually connected to, before a
   byte is sent. That closes the gap where DNS answers differently the second time (DNS rebinding).
"""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import urllib3

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from crawl.fetch.deadline import WATCHDOG

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.I)   # 127.1, 0x7f.0.0.1, 2130706433: inet_aton reads them all


# RFC 6761 / 6762 (and its appendix G private-use TLDs), RFC 8375, ICANN's .internal: never a public web site.
LOCAL_SUFFIXES = ("localhost", "local", "internal", "home.arpa", "localdomain", "intranet", "private", "corp",
                  "home", "lan")
# Cloud metadata services reached by a public-looking name (the addresses themselves are caught as literals).
METADATA_NAMES = ("metadata.goog", "metadata.google.internal", "metadata.tencentyun.com", "instance-data.ec2.internal")
_AMBIGUOUS = re.compile(r"[\\\x00-\x20\x7f]")    # backslash, controls, spaces: parsers split these differently


class PrivateAddressError(Exception):
    """Raised from inside a connection attempt whose peer is not a public address."""


def non_public_kind(ip: IPAddress) -> Optional[str]:
    """Why an address must not be fetched ("loopback", "private", "link-local", ...), or None if it is public."""
    # An IPv6 address can carry an IPv4 one (IPv4-mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64): judge the inner one.
    if ip.version == 6:
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return non_public_kind(inner)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:      # includes 169.254.169.254, the cloud metadata service
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:      # shared address space 100.64/10, documentation ranges, ...
        return "not-global"
    return None


def ip_literal(host: str) -> Optional[IPAddress]:
    """The address if `host` is an IP literal (also the odd IPv4 spellings resolvers accept), else None."""
    host = host.strip("[]").rstrip(".")       # "127.0.0.1." is 127.0.0.1 to every resolver
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])   # drop an IPv6 zone id
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host) and not host.rstrip(".").rsplit(".", 1)[-1].isalpha():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


TRANSIENT_DNS = frozenset({socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11)})


class Resolver:
    """getaddrinfo with a small time-bounded cache and a bounded wait: a host's URLs are checked one after another,
    one lookup each `ttl` seconds; a lookup that does not answer within `timeout` is a transient failure (it keeps
    running on one of `threads` lookup threads, the fetch thread moves on). Definitive failures (no such name)
    are cached like answers; transient ones (EAI_AGAIN, timeout) are not, so a DNS hiccup costs one URL a retry,
    not the whole host. `lookup` is getaddrinfo; tests pass a stand-in resolver."""

    def __init__(self, ttl: float = 300.0, max_entries: int = 100_000, timeout: float = 10.0, threads: int = 8,
                 lookup: Callable = socket.getaddrinfo):
        self.ttl, self.max_entries, self.timeout, self.lookup = ttl, max_entries, timeout, lookup
        self._cache: Dict[str, Tuple[float, List[str], str]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dns")

    def resolve(self, host: str, timeout: Optional[float] = None) -> Tuple[List[str], str]:
        """(addresses, "") or ([], error text); error text starts with "transient" when asking again may help."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(host)
        if hit and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        fut = self._pool.submit(self.lookup, host, None, proto=socket.IPPROTO_TCP)
        try:
            infos = fut.result(timeout=self.timeout if timeout is None else max(0.01, min(timeout, self.timeout)))
            addrs, err = sorted({info[4][0] for info in infos}), ""
        except FutureTimeout:
            return [], f"transient: no DNS answer within {self.timeout:.1f}s"
        except socket.gaierror as e:
            addrs, err = [], f"{'transient: ' if e.errno in TRANSIENT_DNS else ''}{type(e).__name__}: {e}"
        except (UnicodeError, OSError) as e:
            addrs, err = [], f"{type(e).__name__}: {e}"
        if err.startswith("transient"):
            return addrs, err
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[host] = (now, addrs, err)
        return addrs, err


def local_name(host: str) -> Optional[str]:
    """Why a host *name* always means this machine or a private network, or None."""
    host = host.lower().rstrip(".")
    for suffix in LOCAL_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return f"a special-use name (.{suffix})"
    if host in METADATA_NAMES:
        return "a cloud metadata name"
    if "." not in host and ip_literal(host) is None:
        return "a dotless name (resolved through local search domains)"
    return None


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
             timeout: Optional[float] = None) -> Tuple[Optional[Tuple[str, str]], List[str]]:
    """((reason, detail) if a request to `host` must not be made, else None; the checked addresses, if resolved).
    Reasons: "private_address", "dns_error". Names are resolved here unless a proxy resolves them and `pin` is
    off; with allow_private only the lookup is done, not the verdict."""
    ip = ip_literal(host)
    if ip is not None:
        kind = None if allow_private else non_public_kind(ip)
        return (("private_address", f"{host} is {kind}") if kind else None), [str(ip)]
    local = None if allow_private else local_name(host)
    if local:
        return ("private_address", f"{host} is {local}"), []
    if via_proxy and not pin:
        return None, []     # the proxy resolves names; the connect-time guard cannot see past it either
    if allow_private and not pin:
        return None, []
    addrs, err = resolver.resolve(host, timeout)
    if not addrs:
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
