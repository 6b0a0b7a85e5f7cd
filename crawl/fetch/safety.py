"""Refuse to fetch private, loopback, link-local and other non-public addresses (SSRF), before and while connecting.

A crawler fed with URLs from the internet must not be turned against its own network: `http://169.254.169.254/`
(cloud metadata), `http://localhost:6379/`, `http://10.0.0.1/admin`, a public name that resolves to 127.0.0.1, or a
redirect to any of those. Two checks, both skipped when `allow_private` is set (the loopback demo):

1. Before a request (every redirect hop): an IP-literal host is checked as is; a name is resolved with
   `socket.getaddrinfo` and every address it resolves to must be public. With an HTTP proxy the proxy resolves
   names, so only IP literals can be checked here.
2. At connect time (no proxy): `GuardedAdapter` checks the address the socket actually connected to, before a
   byte is sent. That closes the gap where DNS answers differently the second time (DNS rebinding).
"""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.I)   # 127.1, 0x7f.0.0.1, 2130706433: inet_aton reads them all


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
    host = host.strip("[]")
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


class Resolver:
    """getaddrinfo with a small time-bounded cache: a host's URLs are checked one after another, one lookup each
    `ttl` seconds. Failures are cached too (a dead domain is not asked again for each of its URLs)."""

    def __init__(self, ttl: float = 300.0, max_entries: int = 100_000):
        self.ttl, self.max_entries = ttl, max_entries
        self._cache: Dict[str, Tuple[float, List[str], str]] = {}
        self._lock = threading.Lock()

    def resolve(self, host: str) -> Tuple[List[str], str]:
        """(addresses, "") or ([], error text)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(host)
        if hit and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            addrs, err = sorted({info[4][0] for info in infos}), ""
        except (socket.gaierror, UnicodeError, OSError) as e:
            addrs, err = [], f"{type(e).__name__}: {e}"
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[host] = (now, addrs, err)
        return addrs, err


def check_host(host: str, allow_private: bool, via_proxy: bool, resolver: Resolver) -> Optional[Tuple[str, str]]:
    """(reason, detail) if a request to `host` must not be made: "private_address" or "dns_error"; else None."""
    if allow_private:
        return None
    ip = ip_literal(host)
    if ip is not None:
        kind = non_public_kind(ip)
        return ("private_address", f"{host} is {kind}") if kind else None
    if via_proxy:
        return None      # the proxy resolves names; the connect-time guard cannot see past it either
    addrs, err = resolver.resolve(host)
    if not addrs:
        return "dns_error", f"{host}: {err or 'no address'}"
    for addr in addrs:
        kind = non_public_kind(ipaddress.ip_address(addr.split("%", 1)[0]))
        if kind:
            return "private_address", f"{host} resolves to {addr} ({kind})"
    return None


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


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """HTTPAdapter whose direct connections refuse non-public peers (raises PrivateAddressError)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
