"""Address safety: no request may reach a private, loopback, link-local or otherwise non-public address unless the
config allows it; IP literals are refused before any connection, names after resolving, and the connect-time guard
catches a name that only turns private when requests resolves it."""
import time

import pytest

from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import fetch_one, make_session
from crawl.fetch.safety import PrivateAddressError, Resolver, check_host, ip_literal, non_public_kind
from pipeline.demo.loopback import LoopbackWeb


@pytest.mark.parametrize("host,kind", [
    ("127.0.0.1", "loopback"), ("127.1", "loopback"), ("2130706433", "loopback"), ("0x7f.0.0.1", "loopback"),
    ("[::1]", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("2002:7f00:1::", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"), ("10.0.0.1", "private"),
    ("192.168.1.1", "private"), ("172.16.0.1", "private"), ("::ffff:10.1.2.3", "private"), ("fc00::1", "private"),
    ("64:ff9b::a00:1", "private"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"),
    ("::", "unspecified"), ("100.64.0.1", "not-global"),
])
def test_non_public_addresses_are_named(host, kind):
    ip = ip_literal(host)
    assert ip is not None
    assert non_public_kind(ip) == kind


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(host):
    assert non_public_kind(ip_literal(host)) is None


def test_names_are_not_literals():
    assert ip_literal("example.com") is None
    assert ip_literal("1.2.3.com") is None
    assert ip_literal("cafe.example") is None


def test_check_host_with_and_without_a_proxy():
    r = Resolver()
    reason, detail = check_host("ip6-localhost.", allow_private=False, via_proxy=False, resolver=r)
    assert reason == "private_address"
    assert check_host("example.com", allow_private=False, via_proxy=True, resolver=r) is None   # public or unresolvable
    assert check_host("169.254.169.254", allow_private=False, via_proxy=True, resolver=r)[0] == "private_address"
    assert check_host("localhost", allow_private=True, via_proxy=False, resolver=r) is None
    assert check_host("no-such-host.invalid", allow_private=False, via_proxy=False, resolver=r)[0] == "dns_error"


@pytest.fixture(scope="module")
def web():
    with LoopbackWeb() as w:
        w.add(f"http://127.0.0.1:{w.port}/", "<html><body>direct</body></html>")
        yield w


def _direct(web):
    """A URL straight at the loopback server (no proxy): the server answers for any Host."""
    return f"http://127.0.0.1:{web.port}/"


def test_direct_loopback_refused_unless_allowed(web):
    n = len(web.log)
    cfg = FetchConfig(robots=False, min_delay=0)
    result = fetch_one(make_session(cfg), _direct(web), cfg)
    assert result.outcome == "private_address" and not result.network
    assert len(web.log) == n                       # refused before any connection
    cfg = FetchConfig(robots=False, min_delay=0, allow_private=True)
    result = fetch_one(make_session(cfg), _direct(web), cfg)
    assert result.outcome == "ok" and len(web.log) == n + 1


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://10.0.0.1/",
                                 "http://[::ffff:169.254.169.254]/", "http://2130706433/", "http://0.0.0.0:80/"])
def test_ip_literals_refused_before_connecting(url, web):
    # With and without a proxy: a proxy cannot be trusted to refuse them either.
    for cfg in (FetchConfig(robots=False, min_delay=0), FetchConfig(robots=False, min_delay=0, http_proxy=web.proxy_url)):
        t0, n = time.monotonic(), len(web.log)
        result = fetch_one(make_session(cfg), url, cfg)
        assert result.outcome == "private_address", result
        assert not result.network and len(web.log) == n
        assert time.monotonic() - t0 < 1.0


def test_connect_time_guard_catches_what_the_precheck_did_not_see(web):
    """DNS rebinding: the name looked public when checked, resolves to loopback when requests connects.
    Calling the guarded session directly (no precheck) stands in for that second answer."""
    n = len(web.log)
    session = make_session(FetchConfig())
    with pytest.raises(PrivateAddressError):
        session.get(f"http://localhost:{web.port}/", timeout=2)
    assert len(web.log) == n                       # connected, found loopback, closed before sending a byte
    # Through a proxy the guard does not apply (the proxy is the peer), and with allow_private neither.
    assert make_session(FetchConfig(allow_private=True)).get(_direct(web), timeout=2).status_code == 200


def test_resolver_caches_failures():
    r = Resolver(ttl=60)
    a = r.resolve("no-such-host.invalid")
    t0 = time.monotonic()
    assert r.resolve("no-such-host.invalid") == a and a[0] == []
    assert time.monotonic() - t0 < 0.05
