"""Which addresses and host names are public: the pure part of the address guard (crawl/fetch/safety.py).

Addresses are judged by the registries, not by a list of ranges: IPv4 and IPv6 must be `is_global` (Python's
`ipaddress` follows IANA's special-purpose registries), not multicast or reserved, and an IPv6 address must also
lie in a block that IANA has allocated for global unicast (the IPv6 Global Unicast Address Assignments registry
below), which refuses what Python's tables miss: site-local fec0::/10, the returned 6bone 3ffe::/16, IANA's
reserved 2d00::/8 ... 3fff::/16, and every unallocated gap. An IPv6 address that carries an IPv4 one (mapped,
6to4, Teredo, NAT64) is judged by the IPv4 one.

Names are judged by their spelling: special-use names (`localhost`, `.internal`, ...) and names that spell a
non-public address the way public wildcard-DNS services read them (`127.0.0.1.nip.io`, `app-10-0-0-1.sslip.io`,
`7f000001.nip.io`, `--1.sslip.io` for ::1), whatever the service: the proxy or resolver that gets such a name
would connect to its own loopback or network.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache
from typing import Optional

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.I)   # 127.1, 0x7f.0.0.1, 2130706433: inet_aton reads them all

# IANA "IPv6 Global Unicast Address Assignments" (ipv6-unicast-address-assignments; last change 2019-11-06, when
# 2630::/12 went to ARIN; 2a10::/12 went to RIPE NCC on 2019-06-05). Outside these blocks no host is numbered:
# the rest of 2000::/3 is IANA's unallocated pool or reserved (2d00::/8, 2e00::/7, 3000::/4 with the returned
# 6bone 3ffe::/16). Add a block here when IANA allocates one.
GLOBAL_UNICAST = tuple(ipaddress.ip_network(n) for n in (
    "2001::/23",        # IANA special purpose: judged by is_global (Teredo's IPv4 before that)
    "2001:200::/23", "2001:400::/23", "2001:600::/23", "2001:800::/22", "2001:c00::/23", "2001:e00::/23",
    "2001:1200::/23", "2001:1400::/22", "2001:1800::/23", "2001:1a00::/23", "2001:1c00::/22", "2001:2000::/19",
    "2001:4000::/23", "2001:4200::/23", "2001:4400::/23", "2001:4600::/23", "2001:4800::/23", "2001:4a00::/23",
    "2001:4c00::/23", "2001:5000::/20", "2001:8000::/19", "2001:a000::/20", "2001:b000::/20",
    "2002::/16",        # 6to4: judged by its IPv4 address
    "2003::/18", "2400::/12", "2600::/12", "2610::/23", "2620::/23", "2630::/12", "2800::/12", "2a00::/12",
    "2a10::/12", "2c00::/12",
))

# RFC 6761 / 6762 (and its appendix G private-use TLDs), RFC 8375, ICANN's .internal: never a public web site.
LOCAL_SUFFIXES = ("localhost", "local", "internal", "home.arpa", "localdomain", "intranet", "private", "corp",
                  "home", "lan")
# Cloud metadata services reached by a public-looking name (the addresses themselves are caught as literals).
METADATA_NAMES = ("metadata.goog", "metadata.google.internal", "metadata.tencentyun.com", "instance-data.ec2.internal")


def allocated(ip: ipaddress.IPv6Address) -> bool:
    """In a block IANA has allocated for global unicast (GLOBAL_UNICAST)."""
    return any(ip in net for net in GLOBAL_UNICAST)


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
    if ip.version == 6 and ip.is_site_local:    # fec0::/10, deprecated (RFC 3879); Python 3.11 calls it global
        return "site-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if ip.version == 6 and not allocated(ip):
        return "unallocated"
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
    return spelled_address(host)


# Spelled in a name, multicast and reserved addresses are let through (the name is still checked where it
# resolves): no TCP connection reaches them, and every eighth hash-like label (`e3b0c442.pages.dev`) spells one.
_HARMLESS = ("multicast", "reserved", "unallocated")
_PART = re.compile(r"[.-]")
_DECIMAL = re.compile(r"[0-9]{1,3}\Z")
_HEX8 = re.compile(r"[0-9a-f]{8}\Z")


@lru_cache(maxsize=65536)
def spelled_address(host: str) -> Optional[str]:
    """Why a name spells a non-public address, or None. The spellings public wildcard-DNS services answer for
    (nip.io, sslip.io, traefik.me, ...), found anywhere in the name: four decimal numbers in a row separated by
    dots or dashes (`app.10.0.0.1.example`, `app-10-0-0-1.example`), eight hex digits between separators
    (`7f000001.example`), a whole label that is an IPv6 address with dashes for colons (`--1.example`,
    `fe80--1.example`). A spelled public address (`1-2-3-4.example.com`) is not refused."""
    host = host.lower().rstrip(".")
    if ip_literal(host) is not None:
        return None
    spelled = []
    parts = _PART.split(host)
    for i in range(len(parts) - 3):
        quad = parts[i:i + 4]
        if all(_DECIMAL.match(p) and int(p) < 256 for p in quad):
            spelled.append(ipaddress.IPv4Address(".".join(str(int(p)) for p in quad)))
    spelled += [ipaddress.IPv4Address(int(p, 16)) for p in parts if _HEX8.match(p)]
    for label in host.split("."):
        if label.count("-") >= 2:
            try:
                spelled.append(ipaddress.IPv6Address(label.replace("-", ":")))
            except ValueError:
                pass
    for ip in spelled:
        kind = non_public_kind(ip)
        if kind and kind not in _HARMLESS:
            return f"a name that spells {ip} ({kind})"
    return None
