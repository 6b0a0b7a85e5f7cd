"""Fuzz target: a robots.txt. Arbitrary bytes (with and without a BOM, in odd encodings, with huge lines, made of
real directives shuffled with garbage) through crawl/fetch/robots.py as the fetcher uses it (RobotsCache.verdict
and crawl_delay over a fetch function that answers with those bytes): never raises, answers in bounded time,
every URL gets a decision (allowed, or robots_disallowed), and a file that disallows everything for every agent
is obeyed whatever comes before or after it. Budget: the `ci` profile; `python bench/fuzz.py --target robots`."""
from __future__ import annotations

import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, strategies as st  # noqa: E402

from crawl.fetch.robots import RobotsCache, judge  # noqa: E402

AGENT = "webtext-bot/0.1"
URLS = ["http://example.com/", "http://example.com/private/x?y=1", "http://example.com/%E4%B8%AD/",
        "http://example.com/a*b$", "http://example.com/" + "x" * 300]
SECONDS = 2.0     # per file; Protego parses a 500 KiB file in well under a second


def verdicts(body: bytes, status: int = 200):
    cache = RobotsCache(AGENT)
    out = [cache.verdict(url, lambda _u: (status, body, "", "")) for url in URLS]
    delay = cache.crawl_delay(URLS[0])
    return out, delay


directive = st.one_of(
    st.sampled_from(["User-agent: *", "User-agent: webtext-bot", "User-Agent: WEBTEXT", "Disallow: /",
                     "Disallow: /private", "Allow: /", "Allow: /private/x", "Disallow: /*?", "Disallow: /a*b$",
                     "Crawl-delay: 5", "Crawl-delay: nan", "Crawl-delay: -1", "Crawl-delay: 1e400",
                     "Sitemap: http://example.com/s.xml", "Disallow:", "# comment", "", "Request-rate: 1/0",
                     "Disallow: /%E4%B8%AD", "Disallow: /中"]),
    st.text(max_size=40), st.text(st.characters(codec="ascii"), max_size=40),
    st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(["Disallow", "Allow", "User-agent", "Crawl-delay"]),
              st.text(max_size=30)))
texts = st.lists(directive, max_size=25).map("\n".join)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "latin-1", "cp1252", "shift_jis"])
bodies = st.one_of(
    st.builds(lambda t, enc, nl: t.replace("\n", nl).encode(enc, "replace"), texts, encodings,
              st.sampled_from(["\n", "\r\n", "\r"])),
    st.binary(max_size=300),
    st.builds(lambda t, n, c: t.encode() + b"\n" + c * n, texts, st.integers(0, 600_000), st.sampled_from(
        [b"x", b"#", b"\n", b"/", b"Disallow: /a\n", b"\x00"])))


@given(bodies, st.sampled_from([200, 200, 204, 301, 404, 429, 500]))
@example(b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n", 200)
@example(b"User-agent: *\r\nDisallow: /\r\n" + b"#" * 2_000_000, 200)
def test_every_robots_txt_gives_a_decision_in_bounded_time(body, status):
    start = time.monotonic()
    out, delay = verdicts(body, status)
    assert time.monotonic() - start < SECONDS * (1 + len(body) / 2**20)
    for v in out:
        assert v is None or (v[0] in ("robots_disallowed", "robots_unreachable") and isinstance(v[1], str))
    assert delay >= 0 and delay == delay    # a number, never NaN or negative
    robots = judge(status, body, "", "")
    assert robots is not None and robots.kind in ("rules", "allow_all", "unreachable")


@given(texts, encodings.filter(lambda e: e in ("utf-8", "utf-8-sig")), st.booleans())
def test_a_disallow_all_group_is_obeyed_whatever_surrounds_it(before, enc, bom):
    """`User-agent: *` + `Disallow: /` as its own group (after a blank line) after arbitrary other lines: every
    URL is disallowed unless a group names our agent or an Allow line could apply."""
    body = f"{before}\n\nUser-agent: *\nDisallow: /\n".encode(enc)
    if bom and enc == "utf-8":
        body = b"\xef\xbb\xbf" + body
    out, _ = verdicts(body)
    lower = before.lower()
    if "webtext" in lower or "allow" in lower or "user-agent" in lower:
        return    # another group (or a rule inside ours) may legitimately decide otherwise
    assert all(v is not None and v[0] == "robots_disallowed" for v in out), (before, out)


@pytest.mark.parametrize("body", [b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n", b"\xef\xbb\xbfUser-agent: *\r\nDisallow: /"])
def test_a_utf8_bom_does_not_hide_the_first_group(body):
    """A UTF-8 BOM before `User-agent: *` (common from Windows editors) makes the first line unknown to the
    parser on main, so the disallow-all group is lost and every URL is allowed."""
    out, _ = verdicts(body)
    assert all(v is not None and v[0] == "robots_disallowed" for v in out), out
