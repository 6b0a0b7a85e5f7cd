"""The fetcher is never tricked into a request it must not make: special-use names through a proxy, IP literals
in disguise, a redirect whose authority two URL parsers read differently, and (with pin_dns) a proxy that would
resolve a name again. Each case asserts from the loopback proxy's own log what reached the network."""
import socket
import threading
import time

import pytest

from core.records import Link
from crawl.fetch.fetcher import FetchConfig, fetch_host, fetch_one, make_session
from crawl.fetch.safety import Resolver
from pipeline.demo.loopback import LoopbackWeb

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>Hello.</p></body></html>"
PUBLIC = "93.184.216.34"            # a public address: with pin_dns the proxy is asked for it by number
PINNED = []                         # (request target, Host header) as the proxy received them


def _pinned_handler(h, url):
    PINNED.append((h.path, h.headers.get("Host")))
    body = PAGE.encode()
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture(scope="module")
def web():
    with LoopbackWeb() as w:
        w.add("http://good.example/", PAGE)
        w.add("http://good.example/b?z=1", PAGE)
        w.add("http://evil.example/", PAGE)
        w.add_redirect("http://r.example/backslash", "http://evil.example\\@good.example/")
        w.add_redirect("http://r.example/space", "http://evil.example @good.example/")
        w.add_redirect("http://r.example/messy", "HTTP://Good.Example:80/a/../b?utm_source=x&z=1#frag")
        w.add_redirect("http://r.example/to-localhost", "http://localhost/admin")
        w.add_redirect("http://r.example/to-metadata-name", "http://metadata.google.internal/computeMetadata/v1/")
        w.add_handler(f"http://{PUBLIC}/", _pinned_handler)
        yield w


def _cfg(web, **kw):
    base = dict(http_proxy=web.proxy_url, min_delay=0.0, connect_timeout=1.0, read_timeout=0.5, page_timeout=1.0,
                robots=False, backoff=0.01)
    base.update(kw)
    return FetchConfig(**base)


@pytest.mark.parametrize("url", [
    "http://localhost/admin", "http://localhost./admin", "http://app.localhost/", "http://printer.local/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata.goog/", "http://db.internal/",
    "http://router.home.arpa/", "http://intranet/", "http://127.0.0.1./", "http://169.254.169.254./latest/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",              # full-width digits: 127.0.0.1 to IDNA
    "http://r.example/to-localhost", "http://r.example/to-metadata-name",
])
def test_names_for_this_machine_are_refused_through_a_proxy(web, url):
    n = len(web.log)
    cfg = _cfg(web)
    result = fetch_one(make_session(cfg), url, cfg)
    assert result.outcome == "private_address", result
    sent = [e for e in web.log[n:] if e[2] != "r.example"]
    assert sent == []                                   # nothing but the redirecting page reached the proxy


@pytest.mark.parametrize("path", ["/backslash", "/space"])
def test_ambiguous_redirect_authority_is_refused(web, path):
    n = len(web.log)
    cfg = _cfg(web)
    result = fetch_one(make_session(cfg), f"http://r.example{path}", cfg)
    assert result.outcome == "bad_redirect" and "ambiguous" in result.detail, result
    assert [e[2] for e in web.log[n:]] == ["r.example"]   # neither evil.example nor good.example was asked


def test_the_url_checked_is_the_url_sent(web):
    n = len(web.log)
    cfg = _cfg(web)
    result = fetch_one(make_session(cfg), "http://r.example/messy", cfg)
    assert result.outcome == "ok" and result.page.final_url == "http://good.example/b?z=1"
    assert [(e[2], e[3]) for e in web.log[n:]] == [("r.example", "/messy"), ("good.example", "/b?z=1")]


def _answers(table, calls=None):
    """A stand-in for the system resolver: name -> address, or an exception to raise."""
    def lookup(host, port, proto=0):
        if calls is not None:
            calls.append(host)
        answer = table[host]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            time.sleep(3)
            answer = PUBLIC
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, 0))]
    return lookup


def test_pin_dns_sends_the_proxy_the_checked_address(web):
    PINNED.clear()
    n = len(web.log)
    cfg = _cfg(web, pin_dns=True)
    resolver = Resolver(lookup=_answers({"news.example": PUBLIC, "rebind.example": "10.1.2.3"}))
    ok = fetch_one(make_session(cfg), "http://news.example/story", cfg, resolver=resolver)
    assert ok.outcome == "ok" and ok.page.final_url == "http://news.example/story"
    assert PINNED == [(f"http://{PUBLIC}/story", "news.example")]
    bad = fetch_one(make_session(cfg), "http://rebind.example/", cfg, resolver=resolver)
    assert bad.outcome == "private_address" and "10.1.2.3" in bad.detail and not bad.network
    assert len(web.log) == n + 1


def test_transient_dns_failure_does_not_give_up_the_host(web):
    """Five EAI_AGAIN answers in a row (a resolver hiccup) used to trip the circuit breaker for every URL left."""
    PINNED.clear()
    cfg = _cfg(web, pin_dns=True, circuit_breaker=3, max_retries=0)
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    calls = []
    resolver = Resolver(lookup=_answers({"flaky.example": [again] * 5 + [PUBLIC]}, calls))
    links = [Link(f"http://flaky.example/{i}", "flaky.example", 3, (), 0) for i in range(8)]
    outcomes = [r.outcome for _, r in fetch_host(links, cfg, session=make_session(cfg), resolver=resolver)]
    assert outcomes == ["dns_error"] * 5 + ["ok"] * 3
    assert len(calls) == 6                              # transient answers are not cached; the good one is
    assert len(PINNED) == 3


def test_transient_dns_failure_is_retried_within_the_page(web):
    cfg = _cfg(web, pin_dns=True, max_retries=2)
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    resolver = Resolver(lookup=_answers({"hiccup.example": [again, again, PUBLIC]}))
    assert fetch_one(make_session(cfg), "http://hiccup.example/", cfg, resolver=resolver).outcome == "ok"


def test_a_lookup_that_hangs_is_a_bounded_wait(web):
    cfg = _cfg(web, pin_dns=True, dns_timeout=0.2, max_retries=0)
    resolver = Resolver(timeout=0.2, lookup=_answers({"slowdns.example": "hang"}))
    t0 = time.monotonic()
    result = fetch_one(make_session(cfg), "http://slowdns.example/", cfg, resolver=resolver)
    assert result.outcome == "dns_error" and "transient" in result.detail
    assert time.monotonic() - t0 < 0.8


def test_nxdomain_is_cached():
    calls = []
    nx = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    r = Resolver(lookup=_answers({"gone.example": nx}, calls))
    assert r.resolve("gone.example")[0] == [] and r.resolve("gone.example")[0] == []
    assert calls == ["gone.example"]
