"""Fuzz target: a URL. Arbitrary strings and URLs assembled from odd parts (hosts in many spellings: Unicode,
xn-- labels, long labels, numeric IPv4 forms, IPv6 literals, user info, ports) through the link stage's
normalize_url / judge_url (crawl/urls.py) and the fetch guard's URL and name checks (crawl/fetch/safety.py):
no exception, normalization is idempotent, the fast path agrees with it, and a URL it accepts is one the guard
sends unchanged, with a host that is an IP literal or a valid DNS name (labels 1-63 octets, name <= 253, xn--
labels that decode). Budget: the `ci` profile (tests/conftest.py); `python bench/fuzz.py --target url`."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, strategies as st  # noqa: E402

from crawl.fetch.safety import Resolver, ip_literal, sendable_url, vet_host  # noqa: E402
from crawl.urls import LinkRules, judge_url, normalize_url, url_drop_reason  # noqa: E402

RULES = LinkRules()
LDH = "abcdefghijklmnopqrstuvwxyz0123456789-"
RESOLVER = Resolver(lookup=lambda *a, **k: [])   # never asked: via a proxy without pinning, names are not resolved


def dns_name_problem(host: str) -> str:
    """Why `host` (ASCII, as normalize_url gives it) is not a valid DNS name, or ""; the test's own oracle."""
    name = host[:-1] if host.endswith(".") else host
    if not name.isascii():
        return "not ASCII"
    if len(name) > 253:
        return "name over 253 octets"
    for label in name.split("."):
        if label.strip(LDH + "_"):
            return f"label {label!r} has characters outside letters, digits, '-' and '_'"
        if not 1 <= len(label) <= 63:
            return f"label of {len(label)} octets"
        if label.lower().startswith("xn--"):
            try:
                if not label[4:].encode("ascii").decode("punycode"):
                    return "empty xn-- label"
            except UnicodeError:
                return f"bad Punycode label {label!r}"
    return ""




# ------------------------------------------------------------------------------------------------ strategies
labels = st.one_of(st.text(LDH, min_size=1, max_size=12), st.text(LDH, min_size=60, max_size=70),
                   st.builds(lambda s: "xn--" + s, st.text(LDH, max_size=10)),
                   st.text(st.characters(codec="utf-8", exclude_characters="/?#@:[]\\"), min_size=1, max_size=6))
names = st.lists(labels, min_size=1, max_size=5).map(".".join)
ipv4s = st.one_of(st.ip_addresses(v=4).map(str), st.integers(0, 2**32 - 1).map(str),
                  st.integers(0, 2**32 - 1).map(hex), st.lists(st.integers(0, 300), min_size=2, max_size=4).map(
                      lambda xs: ".".join(map(str, xs))))
ipv6s = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(names, ipv4s, ipv6s, names.map(lambda n: n + "."), names.map(str.upper))
ports = st.one_of(st.just(""), st.integers(-1, 70000).map(lambda p: f":{p}"), st.text("0123456789:", max_size=6)
                  .map(lambda p: ":" + p))
userinfo = st.one_of(st.just(""), st.text(st.characters(codec="ascii"), max_size=8).map(lambda u: u + "@"))
paths = st.text(st.characters(codec="utf-8"), max_size=20).map(lambda p: "/" + p.lstrip("/"))
queries = st.one_of(st.just(""), st.text(st.characters(codec="utf-8"), max_size=20).map(lambda q: "?" + q),
                    st.just("?utm_source=x&b=2&a=1"))
schemes = st.sampled_from(["http", "https", "HTTP", "hTTps", "ftp", "javascript", ""])
built = st.builds(lambda s, u, h, p, path, q: f"{s}://{u}{h}{p}{path}{q}", schemes, userinfo, hosts, ports,
                  paths, queries)
urls = st.one_of(built, st.text(max_size=60), st.text(st.characters(codec="ascii"), max_size=60))


@given(urls)
@example("http://EXAMPLE.com:80/a/./b/../c?b=2&a=1#frag")
@example("http://[::ffff:127.0.0.1]/")
@example("http://0x7f.1/")
def test_normalization_is_idempotent_and_the_guard_agrees(url):
    norm = normalize_url(url)                       # never raises: None is the documented refusal
    if norm is None:
        assert judge_url(url, RULES) == ("invalid_url", None)
        return
    host = urlsplit(norm).hostname or ""
    assert normalize_url(norm) == norm              # idempotent
    assert host and host == host.lower()
    # the fast path gives what normalize_url + url_drop_reason give
    assert judge_url(url, RULES)[0] == url_drop_reason(norm, RULES)
    # what normalization accepts, the guard sends unchanged: parsers agree, no ambiguous authority
    assert sendable_url(norm, normalize_url) == (norm, "")
    sent, why = sendable_url(url, normalize_url)
    assert sent in (norm, None) and (sent is not None or why)
    # the host is an address or a valid DNS name; the name checks never raise and say why when they refuse
    assert ip_literal(host) is not None or dns_name_problem(host) == ""
    refusal, _ = vet_host(host, allow_private=False, via_proxy=True, resolver=RESOLVER)
    assert refusal is None or (refusal[0] == "private_address" and refusal[1])


@pytest.mark.parametrize("url", [
    "http://xn--a.com/",                       # Punycode that does not decode
    "http://" + "a" * 64 + ".com/",            # a label over 63 octets
    "http://" + ".".join(["a" * 60] * 5) + "/",   # a name over 253 octets
    "http://\x1f/",                           # a control character as the host (the guard then calls it ambiguous)
])
def test_an_invalid_dns_name_is_refused(url):
    """The issue: refused as invalid_url, on the fast path too (not sent, not refused only later by the guard)."""
    assert judge_url(url, RULES) == ("invalid_url", None)


@pytest.mark.parametrize("url", ["http://example.com/a@[1]", "http://0/@[::]/", "http://example.com/%",
                                 "http://example.com/50%off", "http://example.com/a|b"])
def test_what_normalization_accepts_the_guard_sends(url):
    """normalize_url keeps `[` `]` and a bare `%` in the path, urllib3 percent-encodes them: sendable_url then
    refuses the normalized URL ("parsers disagree"), a refusal after the fact."""
    norm = normalize_url(url)
    assert norm is None or sendable_url(norm, normalize_url) == (norm, "")
