"""robots.txt bodies (RFC 9309): a 2xx file is obeyed on its first 500 KiB once decoded, however large or compressed
the whole (2.5); only a file that cannot be read at all is unavailable/unreachable (2.3.1.3, 2.3.1.4); its body,
like any other, is read through the caps and the deadline, and a redirect's or an error's body is never read."""
import time

import pytest

from crawl.fetch.fetcher import FetchConfig, fetch_one, make_session
from crawl.fetch.robots import judge
from rawhttp import CLOSE, HOLD, RawHTTP, compress, head

PAGE = b"<!doctype html><html><body><p>Hello.</p></body></html>"
OK = [(head(200, {"Content-Type": "text/html"}, length=len(PAGE)) + PAGE, 0)]
RULES = b"User-agent: *\nDisallow: /private\n"
PAD = b"# " + b"x" * 78 + b"\n"                      # an 81-byte comment line


def _robots(body: bytes, coding: str = "", **headers) -> list:
    data = compress(body, coding) if coding else body
    hdrs = {"Content-Type": "text/plain", **({"Content-Encoding": coding} if coding else {}), **headers}
    return [(head(200, hdrs, length=len(data)) + data, 0)]


def _verdicts(robots_script, paths=("/private/x", "/public"), **kw):
    base = dict(allow_private=True, min_delay=0.0, connect_timeout=1.0, read_timeout=2.0, page_timeout=2.0,
                robots=True, robots_timeout=0.6, backoff=0.01)
    base.update(kw)
    cfg = FetchConfig(**base)
    with RawHTTP({"/robots.txt": robots_script, "*": OK}) as srv:
        t0 = time.monotonic()
        results = [fetch_one(make_session(cfg), srv.url(p), cfg) for p in paths]
        took = time.monotonic() - t0
        time.sleep(0.1)                                          # let the server notice a hang-up
    return [r.outcome for r in results], took, srv


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_robots_txt_over_the_cap_is_obeyed_on_its_first_500_kib(coding):
    body = RULES + PAD * 25_000                                  # ~2 MiB once decoded, a few KiB on the wire
    outcomes, took, _ = _verdicts(_robots(body, coding))
    assert outcomes == ["robots_disallowed", "ok"]               # on main: "too large" = absent = all allowed


def test_a_plain_robots_txt_over_every_cap_is_obeyed_on_its_first_500_kib():
    body = RULES + PAD * 25_000                                  # 2 MiB on the wire, over max_bytes too
    outcomes, _, _ = _verdicts(_robots(body), max_bytes=100_000)
    assert outcomes == ["robots_disallowed", "ok"]


def test_rules_past_the_first_500_kib_are_not_read():
    body = b"User-agent: *\n" + PAD * 7_000 + b"Disallow: /private\n"     # the rule starts at ~567 KB
    outcomes, _, _ = _verdicts(_robots(body, "gzip"))
    assert outcomes == ["ok", "ok"]


@pytest.mark.parametrize("script", [
    [(head(200, {"Content-Type": "text/plain"}) + b"User-agent: *\nAllow: /\n", 0), (b"Disallow: /", 2.0), HOLD],
    [(head(200, {"Content-Type": "text/plain"}, version="HTTP/1.0") + b"User-agent: *\n", 0), HOLD],
], ids=["until-close", "http/1.0"])
def test_a_robots_txt_cut_by_our_deadline_is_unreachable_not_a_shorter_file(script):
    outcomes, took, _ = _verdicts(script, paths=("/public",))
    assert outcomes == ["robots_unreachable"]                    # on main: the cut prefix was obeyed (all allowed)
    assert took < 1.2


@pytest.mark.parametrize("script", [
    [(head(200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}) + b"this is not gzip", 0), CLOSE],
    [(head(200, {"Content-Type": "text/plain", "Content-Encoding": "br"}, length=4) + b"abcd", 0)],
], ids=["broken-gzip", "unknown-coding"])
def test_a_2xx_robots_txt_that_cannot_be_read_at_all_is_unreachable(script):
    outcomes, _, _ = _verdicts(script, paths=("/public",))
    assert outcomes == ["robots_unreachable"]                    # on main: unavailable, everything allowed


def test_a_robots_txt_redirect_body_is_never_read():
    script = {"/robots.txt": [(head(301, {"Location": "/real-robots.txt"}), 0)] + [(b"x" * 100, 0.01)] * 200,
              "/real-robots.txt": _robots(RULES), "*": OK}
    cfg = FetchConfig(allow_private=True, min_delay=0.0, read_timeout=2.0, robots=True, robots_timeout=0.6)
    with RawHTTP(script) as srv:
        t0 = time.monotonic()
        result = fetch_one(make_session(cfg), srv.url("/private/x"), cfg)
        took = time.monotonic() - t0
    assert result.outcome == "robots_disallowed", result         # on main: read until timeout = unreachable
    assert took < 0.4


@pytest.mark.parametrize("status,outcome", [(404, "ok"), (503, "robots_unreachable")])
def test_a_robots_txt_error_body_is_never_read(status, outcome):
    script = [(head(status, {"Content-Encoding": "gzip"}), 0)] + [(b"x" * 100, 0.01)] * 200
    outcomes, took, srv = _verdicts(script, paths=("/public",))
    assert outcomes == [outcome] and took < 0.4
    assert srv.requests("/robots.txt")[0].cut


@pytest.mark.parametrize("body", [b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n", b"\xef\xbb\xbfUser-agent: *\r\nDisallow: /"])
def test_a_utf8_bom_does_not_hide_the_first_group(body):
    """Found by tests/test_fuzz_robots.py (h-fuzz): on main the BOM made `User-agent: *` unknown, so all allowed."""
    robots = judge(200, body, "", "")
    assert robots.kind == "rules" and not robots.parser.can_fetch("http://h.example/x", "webtext")


def test_judge_keeps_redirect_trouble_unavailable_and_unreadable_2xx_unreachable():
    assert judge(0, b"", "too_many_redirects", "").kind == "allow_all"      # RFC 9309 2.3.1.2
    assert judge(200, b"", "content_encoding_error", "").kind == "unreachable"
    assert judge(200, b"User-agent: *\nDisallow: /\n", "", "").kind == "rules"
    assert judge(0, b"", "connection_error", "") is None                   # network failure: not cached
