"""The embedded demo web: the loopback server (proxy + virtual hosts) and the generated demo sites and dump."""
import gzip
import io
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import py3langid
import pytest
import requests
import trafilatura
import zstandard

from crawl.links import normalize_url
from pipeline.demo.web import DEMO_CASES, build_demo
from pipeline.demo.loopback import LoopbackWeb


# --- LoopbackWeb -------------------------------------------------------------------------------------------------

@pytest.fixture
def web():
    with LoopbackWeb() as w:
        yield w


def test_proxy_serves_virtual_hosts_by_real_name(web):
    web.add("http://news.example/a", "<p>news a</p>")
    web.add("http://blog.example/a?x=1", b"blog a", content_type="text/plain")
    proxies = {"http": web.proxy_url}
    with requests.Session() as s:
        r1 = s.get("http://news.example/a", proxies=proxies, timeout=5)
        r2 = s.get("http://blog.example/a?x=1", proxies=proxies, timeout=5)
        r3 = s.get("http://blog.example/a", proxies=proxies, timeout=5)       # query is part of the route
        r4 = s.head("http://news.example/a", proxies=proxies, timeout=5)
    assert (r1.status_code, r1.text, r1.headers["Content-Type"]) == (200, "<p>news a</p>", "text/html; charset=utf-8")
    assert (r2.status_code, r2.content, r2.headers["Content-Type"]) == (200, b"blog a", "text/plain")
    assert r3.status_code == 404 and "Not Found" in r3.text
    assert r4.status_code == 200 and r4.content == b"" and r4.headers["Content-Length"] == str(len("<p>news a</p>"))
    assert [(m, h, p) for _, m, h, p in web.log] == [
        ("GET", "news.example", "/a"), ("GET", "blog.example", "/a?x=1"), ("GET", "blog.example", "/a"),
        ("HEAD", "news.example", "/a")]


def test_direct_request_uses_host_header_and_keeps_alive(web):
    web.add("http://news.example/", "home")
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as sock:
        f = sock.makefile("rb")
        for _ in range(2):   # two requests on one connection: keep-alive with Content-Length
            sock.sendall(b"GET / HTTP/1.1\r\nHost: news.example\r\n\r\n")
            assert f.readline().startswith(b"HTTP/1.1 200")
            headers = {}
            while (line := f.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            assert f.read(int(headers["content-length"])) == b"home"


def test_redirect_robots_and_handler(web):
    web.add_redirect("http://old.example/x", "http://en.wikipedia.org/wiki/X")
    web.add("http://en.wikipedia.org/wiki/X", "wiki")
    web.add_robots("old.example", "User-agent: *\nDisallow: /private/\n")

    def gzip_handler(h, url):
        body = gzip.compress(url.path.encode())
        h.send_response(200)
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    web.add_handler("http://hostile.example/", lambda h, url: h.send_error(500))
    web.add_handler("http://hostile.example/gz/", gzip_handler)   # longest prefix wins
    proxies = {"http": web.proxy_url}
    r = requests.get("http://old.example/x", proxies=proxies, timeout=5)
    assert r.text == "wiki" and [x.status_code for x in r.history] == [301]
    assert r.history[0].headers["Location"] == "http://en.wikipedia.org/wiki/X"
    assert "Disallow: /private/" in requests.get("http://old.example/robots.txt", proxies=proxies, timeout=5).text
    assert requests.get("http://new.example/robots.txt", proxies=proxies, timeout=5).status_code == 404
    assert requests.get("http://hostile.example/gz/deep", proxies=proxies, timeout=5).text == "/gz/deep"
    assert requests.get("http://hostile.example/other", proxies=proxies, timeout=5).status_code == 500


def test_many_concurrent_slow_requests(web):
    def slow(h, url):
        time.sleep(0.3)
        h.send_response(200)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

    web.add_handler("http://slow.example/", slow)
    t0 = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        codes = list(pool.map(lambda i: requests.get(f"http://slow.example/{i}", timeout=10,
                                                     proxies={"http": web.proxy_url}).status_code, range(64)))
    assert codes == [200] * 64
    assert time.monotonic() - t0 < 3.0          # served in parallel, not one after another
    assert len(web.log) == 64


# --- the generated demo web and dump -------------------------------------------------------------------------------

PUSHSHIFT_FIELDS = {"id", "url", "score", "is_self", "over_18", "subreddit", "created_utc", "domain", "permalink",
                    "title"}


def read_dump(path: Path) -> list:
    with zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(path.open("rb")) as r:
        return r.read().split(b"\n")[:-1]


def parse(lines):
    """Valid submissions (dicts with every Pushshift field) and the rest."""
    good, bad = [], []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        (good if isinstance(obj, dict) and PUSHSHIFT_FIELDS <= obj.keys() else bad).append(obj)
    return good, bad


def word_5grams(text):
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + 5]) for i in range(len(w) - 4)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = build_demo(tmp_path_factory.mktemp("demo"), seed=0)
    with d.web:
        yield d


def fetch(demo, url):
    return requests.get(url, proxies={"http": demo.web.proxy_url}, timeout=10, allow_redirects=False)


def test_demo_is_deterministic(tmp_path, demo):
    again = build_demo(tmp_path / "a", seed=0)
    assert again.dump_path.read_bytes() == demo.dump_path.read_bytes()
    assert again.web.urls() == demo.web.urls()
    assert all(again.web._routes[k] == demo.web._routes[k] for k in demo.web.urls())
    assert (again.planted, again.expected_kept_urls) == (demo.planted, demo.expected_kept_urls)
    other = build_demo(tmp_path / "b", seed=1)
    assert other.dump_path.read_bytes() != demo.dump_path.read_bytes()
    assert set(other.planted) == set(DEMO_CASES)


def test_dump_needs_the_large_window_like_real_pushshift_dumps(demo):
    raw = demo.dump_path.read_bytes()
    assert zstandard.get_frame_parameters(raw).window_size == 2**31
    with pytest.raises(zstandard.ZstdError):
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as r:
            r.read()
    good, bad = parse(read_dump(demo.dump_path))
    assert len(good) >= 60 and len(bad) >= 4
    assert all(s["created_utc"] < 1512086400 for s in good)          # before Dec 2017, as GPT-2's links
    assert [s["created_utc"] for s in good] == sorted(s["created_utc"] for s in good)


def test_every_planted_case_is_in_the_dump(demo):
    assert list(demo.planted) == list(DEMO_CASES) and all(demo.planted.values())
    lines = read_dump(demo.dump_path)
    good, bad = parse(lines)
    by_url = {}
    for s in good:
        by_url.setdefault(s["url"], []).append(s)
    for case, urls in demo.planted.items():
        for url in urls:
            assert url in by_url or any(url.encode() in line for line in lines), (case, url)
    subs = lambda case: [s for u in dict.fromkeys(demo.planted[case]) for s in by_url[u]]   # noqa: E731
    assert all(s["score"] in (1, 2) for s in subs("low_karma"))
    assert all(s["is_self"] and "reddit.com/r/" in s["url"] for s in subs("self_post"))
    assert all(s["over_18"] and s["score"] >= 3 for s in subs("nsfw"))
    dup = subs("duplicate_submission")
    assert len(dup) == 2 and len({s["url"] for s in dup}) == 1 and [s["score"] for s in dup] == [2, 2]
    assert len({s["subreddit"] for s in dup}) == 2
    assert len({normalize_url(u) for u in demo.planted["tracking_params"]}) == 1
    assert any(b"utm_source=" in line for line in lines)
    # malformed lines: not JSON at all (truncated, junk bytes), an empty object, an object lacking fields
    assert sum(isinstance(b, bytes) for b in bad) >= 2 and {} in bad
    assert any(isinstance(b, dict) and "url" in b and "score" not in b for b in bad)
    # every expected survivor is a normal submission with karma >= 3, not NSFW, not a self post
    for url in demo.expected_kept_urls:
        best = max((s for s in good if normalize_url(s["url"]) == url), key=lambda s: s["score"])
        assert best["score"] >= 3 and not best["over_18"] and not best["is_self"]
    assert 40 <= len(demo.expected_kept_urls) <= 80


def test_pages_are_served_through_the_proxy(demo):
    for url in demo.expected_kept_urls[:10] + demo.planted["robots_disallowed"]:
        r = fetch(demo, url)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), url
    assert fetch(demo, demo.planted["http_404"][0]).status_code == 404
    r = fetch(demo, demo.planted["redirect_to_wikipedia"][0])
    assert r.status_code == 301 and r.headers["Location"].startswith("http://en.wikipedia.org/")
    assert fetch(demo, r.headers["Location"]).status_code == 200
    assert {fetch(demo, u).headers["Content-Type"] for u in demo.planted["not_html"]} == {
        "application/octet-stream", "image/png"}
    assert all(fetch(demo, u).headers["Content-Type"].startswith(("image/", "application/pdf"))
               for u in demo.planted["image"] + demo.planted["pdf"])
    url = urlsplit(demo.planted["robots_disallowed"][0])
    robots = fetch(demo, f"http://{url.netloc}/robots.txt").text
    assert "User-agent: *" in robots and f"Disallow: /{url.path.split('/')[1]}/" in robots


def test_trafilatura_finds_the_article_not_the_boilerplate(demo):
    url = demo.expected_kept_urls[0]
    text = trafilatura.extract(fetch(demo, url).text, url=url, include_comments=False)
    paragraphs = demo.article_text[url].split("\n")
    assert all(p in text for p in paragraphs)
    for boilerplate in ("cookies", "Sign up for our free newsletter", "All rights reserved", "Privacy policy",
                        "Related stories", "Most read", "Share this article"):
        assert boilerplate not in text, boilerplate
    assert len(text.split()) >= 200


def test_planted_pages_extract_as_intended(demo):
    def extract(url):
        return trafilatura.extract(fetch(demo, url).text, url=url)

    first, second = (word_5grams(extract(u)) for u in demo.planted["near_duplicate"])
    assert len(first & second) / len(first | second) >= 0.85
    a, b = demo.planted["exact_duplicate"]
    assert extract(a) == extract(b) and a != b
    german = extract(demo.planted["non_english"][0])
    assert len(german.split()) >= 250 and py3langid.classify(german)[0] == "de"
    assert len(extract(demo.planted["too_short"][0]).split()) < 60
