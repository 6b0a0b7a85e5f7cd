"""Property test of one fetch against generated HTTP responses (Hypothesis; the budget is the suite's profile in
tests/conftest.py). A raw-socket server (tests/rawhttp.py) sends any status line, framing (Content-Length right,
short or followed by junk; chunked complete or cut; until-close), coding (identity, gzip, deflate), body size (up to
beyond the caps), split into pieces with delays, and ends with a FIN, a RST or by holding the connection open.

Whatever it sends, the real fetcher: never runs past its page deadline (+ slack); ends with "ok" or a named drop
reason; keeps a body only when it arrived complete as its framing says, exactly as sent, within the caps; never keeps a
redirect's or an error's body (a redirect leads to /ok, whose page is the only body it may keep); and once the
headers are in, follows a redirect or names an error at once, whatever its body does (it is never read)."""
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from crawl.fetch.fetcher import DROP_REASONS, FetchConfig, fetch_one, make_session
from crawl.fetch.http import status_outcome
from rawhttp import CLOSE, HOLD, RESET, RawHTTP, chunked, compress, head

PAGE = b"<!doctype html><html><body><p>Hello.</p></body></html>"
OK = [(head(200, {"Content-Type": "text/html"}, length=len(PAGE)) + PAGE, 0)]
START = b"<!doctype html><html><body>"
WIRE_CAP, DECODED_CAP, PAGE_TIMEOUT, SLACK = 4096, 16384, 0.6, 0.8
CFG = FetchConfig(allow_private=True, min_delay=0.0, connect_timeout=1.0, read_timeout=2.0, robots=False,
                  page_timeout=PAGE_TIMEOUT, max_bytes=WIRE_CAP, max_decompressed_bytes=DECODED_CAP, max_retries=0)
COMPLETE = ("length", "length-then-junk", "chunked")          # framings that say where the body ends
IN_TIME = 0.1                   # pieces sent with at most this much delay in all: well inside the page timeout


@st.composite
def responses(draw):
    status = draw(st.sampled_from([200, 200, 200, 203, 301, 302, 307, 404, 410, 429, 500, 503]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    coding = draw(st.sampled_from(["", "", "gzip", "deflate"]))
    framing = draw(st.sampled_from(["length", "length-short", "length-then-junk", "chunked", "chunked-cut",
                                    "until-close", "until-close"]))
    unit = draw(st.sampled_from([b"a", b"<p>some words</p>\n", b"\xc3\xa9t\xc3\xa9 "]))
    size = draw(st.one_of(st.integers(0, 3 * DECODED_CAP),
                          st.sampled_from([WIRE_CAP - 1, WIRE_CAP + 1, DECODED_CAP - 1, DECODED_CAP + 1])))
    body = START + unit * (size // len(unit))
    encoded = compress(body, coding)
    headers = {"Content-Type": "text/html", **({"Location": "/ok"} if 300 <= status < 400 else {}),
               **({"Content-Encoding": coding} if coding else {})}
    if framing.startswith("chunked"):
        headers["Transfer-Encoding"] = "chunked"
        payload = chunked(encoded, draw(st.integers(1, 5000)), complete=framing == "chunked")
        if framing == "chunked-cut":
            payload = payload[:len(payload) - draw(st.integers(0, min(20, len(payload))))]
    elif framing == "until-close":
        payload = encoded
    else:
        missing = draw(st.integers(1, 100)) if framing == "length-short" else 0
        headers["Content-Length"] = str(len(encoded) + missing)
        payload = encoded + (b"JUNK" * 10 if framing == "length-then-junk" else b"")
    wire = head(status, headers, version=version) + payload
    head_len = len(wire) - len(payload)
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=3)))
    pieces = [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)])]
    delays = draw(st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.05, PAGE_TIMEOUT + 0.2]),
                           min_size=len(pieces), max_size=len(pieces)))
    end = draw(st.sampled_from([CLOSE, HOLD, HOLD, RESET]))
    steps = [(p, d) for p, d in zip(pieces, delays)] + [end]
    starts = [0] + cuts
    head_wait = sum(d for d, start in zip(delays, starts) if start < head_len)   # when the headers are all out
    return dict(status=status, framing=framing, body=body, encoded=encoded, end=end, steps=steps,
                head_wait=head_wait, all_wait=sum(delays))


@settings(deadline=None)
@given(responses())
def test_any_response_ends_in_time_with_a_named_outcome_and_never_a_cut_or_oversized_body(r):
    with RawHTTP({"/": r["steps"], "/ok": OK}, limit=3.0) as srv:
        t0 = time.monotonic()
        result = fetch_one(make_session(CFG), srv.url("/"), CFG)
        took = time.monotonic() - t0
    assert took < PAGE_TIMEOUT + SLACK, (took, result)
    assert result.outcome == "ok" or result.outcome in DROP_REASONS, result
    status, fits = r["status"], len(r["encoded"]) <= WIRE_CAP and len(r["body"]) <= DECODED_CAP
    complete = r["framing"] in COMPLETE or (r["framing"] == "until-close" and r["end"] == CLOSE)
    if r["end"] != RESET and r["head_wait"] <= IN_TIME:
        # Headers in time: a redirect is followed and an error named at once, whatever their bodies do.
        if 300 <= status < 400:
            assert result.outcome == "ok", result
        elif status >= 400:
            assert result.outcome == status_outcome(status), result
        elif complete and fits and r["all_wait"] <= IN_TIME:
            assert result.outcome == "ok", result               # no false drop of a plain good page
    if result.outcome != "ok":
        assert result.page is None
        return
    if 300 <= r["status"] < 400:
        assert result.page.body == PAGE and result.page.final_url.endswith("/ok")    # the redirect's own body: unread
        return
    assert 200 <= r["status"] < 300, result                     # an error's body is never kept
    assert complete, (r["framing"], r["end"], result)           # a cut body is never kept as complete
    assert result.page.body == r["body"]                        # exactly what was sent
    assert len(r["encoded"]) <= WIRE_CAP and len(r["body"]) <= DECODED_CAP
