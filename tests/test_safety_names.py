"""A host that cannot be a DNS name (bad Punycode, a label over 63 octets, a name over 253, an empty label, a
character no host name has, a numeric last label that is no IPv4 address) is an invalid URL: `invalid_url` in the
link stage, on its fast path too, and `bad_redirect` as a redirect target, never sent."""
import socket

import pytest

from crawl.fetch.fetcher import FetchConfig, fetch_one, make_session
from crawl.fetch.safety import Resolver
from crawl.links import LinkRules, judge_url, normalize_url, url_drop_reason
from pipeline.demo.loopback import LoopbackWeb

LABEL63, NAME253 = "a" * 63, ".".join(["a" * 63] * 3 + ["b" * 61])
INVALID = [
    "xn--abc.example", "www.xn--a.example", "xn--.example", "xn--zz-.example", "xn--xn--bcher-kva.example",
    "imgur.com.xn--9",                                  # a blocked domain on the fast path still fails first
    "a" * 64 + ".example", NAME253 + "c", "a..b.example", ".example.com", "www..example.com",
    "exa$mple.com", "%31%32%37.0.0.1", "1.2.3.4.5", "999.1.1.1", "www.example.123",
]
VALID = ["xn--bcher-kva.example", "xn--ls8h.la", "xn--p1ai", LABEL63 + ".example", NAME253, "my_blog.example.com",
         "127.1", "0x7f.1", "2130706433", "1.2.3.4", "example.com"]


def slow_judge(url):
    norm = normalize_url(url)
    return ("invalid_url", None) if norm is None else (url_drop_reason(norm, LinkRules()), norm)


@pytest.mark.parametrize("host", INVALID)
@pytest.mark.parametrize("path", ["/", "/a.html", ""])
def test_hosts_that_are_not_dns_names_are_invalid_urls(host, path):
    url = f"http://{host}{path}"
    assert normalize_url(url) is None
    assert judge_url(url, LinkRules()) == ("invalid_url", None)


@pytest.mark.parametrize("host", VALID)
def test_valid_names_stay_valid_on_both_paths(host):
    url = f"http://{host}/a"
    assert normalize_url(url) == url
    assert judge_url(url, LinkRules()) == slow_judge(url) == (None, url)


def _no_such_name(host, port, proto=0):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture(scope="module")
def web():
    with LoopbackWeb() as w:
        w.add_redirect("http://r.example/punycode", "http://xn--abc.example/")
        w.add_redirect("http://r.example/long", f"http://{'a' * 64}.example/")
        w.add_redirect("http://r.example/empty", "http://www..example/")
        w.add_redirect("http://r.example/numeric", "http://10.0.0.1.2/")
        yield w


@pytest.mark.parametrize("path", ["/punycode", "/long", "/empty", "/numeric"])
def test_a_redirect_to_such_a_host_is_a_bad_redirect(web, path):
    n = len(web.log)
    cfg = FetchConfig(http_proxy=web.proxy_url, min_delay=0.0, robots=False, read_timeout=1.0)
    resolver = Resolver(lookup=_no_such_name)
    result = fetch_one(make_session(cfg), f"http://r.example{path}", cfg, resolver=resolver)
    assert result.outcome == "bad_redirect", result
    assert [e[2] for e in web.log[n:]] == ["r.example"]       # the target was never asked for
