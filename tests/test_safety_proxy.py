"""Behind an HTTP proxy the address guard holds as far as it can: a name that spells a non-public address is
refused by name, a name that resolves here is checked before the proxy is asked and sent to the proxy by its
checked address, and only a name that does not resolve here goes to the proxy by name. What reached the network
is read from the loopback proxy's own log; a stand-in resolver plays DNS (names resolve to what the test says)."""
import socket
import threading
import time

import pytest

from crawl.fetch.fetcher import FetchConfig, fetch_one, make_session
from crawl.fetch.safety import Resolver, local_name
from conftest import recording_handler
from pipeline.demo.loopback import LoopbackWeb

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>Hello.</p></body></html>"
PUBLIC = "93.184.216.34"
HOP = "93.184.216.35"                # public too: serves a redirect to a name that resolves inside
SEEN = []                           # (request target, Host header) of requests the proxy got for PUBLIC
NX = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
AGAIN = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


_public = recording_handler(SEEN, PAGE)


@pytest.fixture(scope="module")
def web():
    with LoopbackWeb() as w:
        w.add("http://offline.example/", PAGE)
        w.add("http://corp.example/a", PAGE)
        w.add("http://corp.example/b", PAGE)
        w.add_redirect(f"http://{HOP}/", "http://inside.example/admin")
        for name in ("127.0.0.1.nip.io", "inside.example", "ten.example", "v6.example"):
            w.add(f"http://{name}/", PAGE)        # what a proxy that resolves the name itself would reach
        w.add_handler(f"http://{PUBLIC}/", _public)
        yield w


def _dns(table, calls=None):
    """A stand-in for getaddrinfo: name -> address or exception; any other name does not exist."""
    def lookup(host, port, proto=0):
        if calls is not None:
            calls.append(host)
        answer = table.get(host, NX)
        if isinstance(answer, BaseException):
            raise answer
        family = socket.AF_INET6 if ":" in answer else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (answer, 0))]
    return lookup


def _fetch(web, url, table=None, **kw):
    cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, connect_timeout=1.0, read_timeout=1.0,
                      page_timeout=2.0, robots=False, backoff=0.01, **kw)
    return fetch_one(make_session(cfg), url, cfg, resolver=Resolver(lookup=_dns(table or {})))


@pytest.mark.parametrize("name", [
    "127.0.0.1.nip.io", "app.10.0.0.1.sslip.io", "10-0-0-1.sslip.io", "app-127-0-0-1.nip.io", "7f000001.nip.io",
    "--1.sslip.io", "fe80--1.sslip.io", "169-254-169-254.traefik.me", "customer.192.168.0.1.example.com",
    "0-0-0-0.nip.io", "a9fea9fe.nip.io", "--ffff-a00-1.sslip.io", "100.64.0.1.nip.io",
])
def test_a_name_that_spells_a_non_public_address_is_refused_by_name(web, name):
    n = len(web.log)
    result = _fetch(web, f"http://{name}/")           # nothing resolves here: the proxy would resolve it
    assert result.outcome == "private_address" and "spells" in result.detail, result
    assert not result.network and web.log[n:] == []


@pytest.mark.parametrize("name", [
    "1-2-3-4.example.com", "www.1.2.3.4.example.com", "8.8.8.8.nip.io", "deadbeef.example.com", "e3b0c442.pages.dev",
    "2a00-1450-4001-81b--200e.sslip.io", "www.example.com", "web-01.example.com", "2019-10-01.example.org",
    "a1b2c3d4e5.example", "cafe--babe.example", "x-1-2-3.example", "1.2.3.example", "xn--bcher-kva.example",
])
def test_a_spelled_public_address_or_a_plain_name_is_not_refused(name):
    assert local_name(name) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.9.8.7", "169.254.169.254", "::1", "fd00::1"])
def test_a_name_that_resolves_to_a_non_public_address_never_reaches_the_proxy(web, address):
    n = len(web.log)
    result = _fetch(web, "http://ten.example/", {"ten.example": address})
    assert result.outcome == "private_address" and address in result.detail, result
    assert not result.network and web.log[n:] == []


def test_a_redirect_to_a_name_that_resolves_inside_is_refused_at_the_hop(web):
    n = len(web.log)
    result = _fetch(web, "http://hop.example/", {"hop.example": HOP, "inside.example": "10.0.0.5"})
    assert result.outcome == "private_address" and "10.0.0.5" in result.detail, result
    assert [e[2] for e in web.log[n:]] == [HOP]     # only the redirecting page, by its checked address


def test_a_name_that_resolves_here_goes_to_the_proxy_by_its_checked_address(web):
    SEEN.clear()
    result = _fetch(web, "http://news.example/story?id=1", {"news.example": PUBLIC})
    assert result.outcome == "ok" and result.page.final_url == "http://news.example/story?id=1", result
    assert SEEN == [(f"http://{PUBLIC}/story?id=1", "news.example")]


@pytest.mark.parametrize("failure", [NX, AGAIN])
def test_a_name_that_does_not_resolve_here_still_goes_through_the_proxy(web, failure):
    n = len(web.log)
    result = _fetch(web, "http://offline.example/", {"offline.example": failure})
    assert result.outcome == "ok", result
    assert [(e[2], e[3]) for e in web.log[n:]] == [("offline.example", "/")]


def test_proxy_only_dns_costs_one_lookup_per_host(web):
    """A resolver that cannot answer (EAI_AGAIN behind a proxy-only network) is asked once per host, not per URL."""
    calls = []
    cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, robots=False, read_timeout=1.0)
    resolver, session = Resolver(lookup=_dns({"corp.example": AGAIN}, calls)), make_session(cfg)
    for path in ("a", "b"):
        assert fetch_one(session, f"http://corp.example/{path}", cfg, resolver=resolver).outcome == "ok"
    assert calls == ["corp.example"]


def test_allow_private_through_a_proxy_asks_no_resolver(web):
    """The demo: loopback web, names that never resolve, no lookups at all."""
    calls = []
    cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, robots=False, allow_private=True)
    result = fetch_one(make_session(cfg), "http://127.0.0.1.nip.io/", cfg, resolver=Resolver(lookup=_dns({}, calls)))
    assert result.outcome == "ok" and calls == []


def test_the_demo_web_serves_a_pinned_request_by_its_name(web):
    """Where the demo's names do resolve (a machine with DNS), the loopback proxy gets the checked address with the
    name in Host, and serves the name's pages as a real proxy would reach the name's server at that address."""
    n = len(web.log)
    result = _fetch(web, "http://offline.example/", {"offline.example": "93.184.216.99"})
    assert result.outcome == "ok" and result.page.final_url == "http://offline.example/", result
    assert [(e[2], e[3]) for e in web.log[n:]] == [("offline.example", "/")]


def test_a_slow_lookup_leaves_the_first_request_to_the_proxy_and_checks_the_rest(web):
    """Behind a proxy a lookup gets half the wait; the name then goes by name, the lookup keeps running (never a
    second one beside it), and its late answer is checked for every later request to the host."""
    calls, answer = [], threading.Event()

    def slow(host, port, proto=0):
        calls.append(host)
        answer.wait(5)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.1.1", 0))]

    cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, robots=False, read_timeout=1.0, dns_timeout=0.4)
    resolver, session = Resolver(timeout=cfg.dns_timeout, lookup=slow), make_session(cfg)
    n = len(web.log)
    t0 = time.monotonic()
    assert fetch_one(session, "http://corp.example/a", cfg, resolver=resolver).outcome == "ok"
    assert 0.15 < time.monotonic() - t0 < 1.0                  # waited half of dns_timeout, then went by name
    answer.set()
    while resolver.resolve("corp.example", 0.01) == ([], "transient: no DNS answer within 0.01s"):
        time.sleep(0.01)
    result = fetch_one(session, "http://corp.example/b", cfg, resolver=resolver)
    assert result.outcome == "private_address" and "10.1.1.1" in result.detail, result
    assert [(e[2], e[3]) for e in web.log[n:]] == [("corp.example", "/a")] and calls == ["corp.example"]


def test_proxy_dns_only_leaves_names_to_the_proxy_but_still_refuses_spelled_ones(web):
    """For proxy-only DNS where local lookups stall: no lookup here, the name goes to the proxy as it is."""
    calls = []
    cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, robots=False, proxy_dns_only=True)
    resolver = Resolver(lookup=_dns({"offline.example": "10.0.0.1"}, calls))
    n = len(web.log)
    assert fetch_one(make_session(cfg), "http://offline.example/", cfg, resolver=resolver).outcome == "ok"
    assert calls == [] and [(e[2], e[3]) for e in web.log[n:]] == [("offline.example", "/")]
    spelled = fetch_one(make_session(cfg), "http://10-0-0-1.sslip.io/", cfg, resolver=resolver)
    assert spelled.outcome == "private_address" and not spelled.network
    with pytest.raises(ValueError, match="proxy_dns_only"):
        FetchConfig(http_proxy=web.proxy_url, proxy_dns_only=True, pin_dns=True)
