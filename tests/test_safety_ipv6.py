"""Only globally routable unicast addresses are fetched, in any notation: IPv6 must lie in a block IANA allocated for
global unicast (site-local, the returned 6bone block, IANA-reserved and unallocated space are refused, whatever
Python's own tables say), IPv4 must be global and not multicast or reserved; literals in URLs (compressed,
zero-padded, upper case, IPv4-embedded, with a port) and addresses a name resolves to are judged alike."""
import socket

import pytest

from crawl.fetch.fetcher import FetchConfig, fetch_one, make_session
from crawl.fetch.safety import Resolver, check_host, ip_literal, non_public_kind

REFUSED = [
    "fec0::1", "FEC0:0000:0000:0000:0000:0000:0000:0001", "fec0::10.0.0.1", "feff:ffff::1",   # site-local
    "3ffe::1", "3ffe:0831:0200::1", "3FFE:0:0::0001",                                       # 6bone (returned)
    "2d00::1", "2e00::1", "3000::1", "3fff:ffff::1",                                          # IANA reserved
    "2001:4e00::1", "2004::1", "2410::1", "2c10::1",                                          # not allocated
    "4000::1", "5f00::1", "::8.8.8.8", "::ffff:0:8.8.8.8", "64:ff9b:1::808:808", "100::1",   # outside 2000::/3
    "2001:db8::1", "2001:2::1", "2001:10::1",                                                # special purpose
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "0.1.2.3",
    "::ffff:240.0.0.1",
]
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:81b::200e",
    "2400:cb00::1", "2800:3f0:4001::1", "2c0f:fb50:4003::1", "2620:fe::fe", "2a10::1", "2630::1", "2003::1",
    "2001:67c:2e8::1", "2001:200::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_unicast_addresses_are_refused(address):
    assert non_public_kind(ip_literal(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_global_unicast_addresses_pass(address):
    assert non_public_kind(ip_literal(address)) is None


@pytest.mark.parametrize("url", [
    "http://[fec0::1]/", "http://[FEC0::0001]:8080/x", "http://[fec0:0:0:0:0:0:0:1]/", "http://[3ffe::1]/",
    "http://[3ffe:0831:0200:0000:0000:0000:0000:0001]/", "http://[2d00::1]/", "http://[fec0::127.0.0.1]/",
    "http://[2001:4e00::1]/", "http://240.0.0.1/", "http://[::ffff:240.0.0.1]/",
])
@pytest.mark.parametrize("proxy", [False, True])
def test_literals_in_any_notation_are_refused_before_connecting(url, proxy):
    cfg = FetchConfig(robots=False, min_delay=0, connect_timeout=0.5,
                      http_proxy="http://127.0.0.1:9" if proxy else None)      # nothing listens there
    result = fetch_one(make_session(cfg), url, cfg)
    assert result.outcome == "private_address" and not result.network, result


@pytest.mark.parametrize("host", ["fec0::1%eth0", "[fec0::1%25eth0]", "[3ffe::1]", "3ffe::1%1"])
def test_zone_ids_and_brackets_do_not_hide_the_address(host):
    r = Resolver(lookup=lambda *a, **k: pytest.fail("an address is never looked up"))
    assert check_host(host, allow_private=False, via_proxy=False, resolver=r)[0] == "private_address"


@pytest.mark.parametrize("address", ["fec0::1", "3ffe::1", "2d00::1", "240.0.0.1"])
@pytest.mark.parametrize("proxy", [False, True])
def test_a_name_resolving_to_such_an_address_is_refused(address, proxy):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    r = Resolver(lookup=lambda *a, **k: [(family, socket.SOCK_STREAM, 6, "", (address, 0))])
    reason, detail = check_host("news.example", allow_private=False, via_proxy=proxy, resolver=r)
    assert reason == "private_address" and address in detail
