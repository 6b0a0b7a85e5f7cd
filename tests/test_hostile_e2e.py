"""The whole pipeline over the hostile loopback web of test_fetch.py: the run finishes, every link ends under a
named reason in _drops/, and the stats add up at every stage."""
import glob
import json
import os

import zstandard

from crawl.links import normalize_url
from pipeline.drops import read_drops
from webtext import main
from test_fetch import web  # noqa: F401  (the hostile web fixture)

EXPECTED = {   # a sample of links and the reason the pipeline must give
    "http://e.example/410": "fetch/http_4xx",
    "http://e.example/500": "fetch/http_5xx",
    "http://e.example/429-forever": "fetch/http_429",
    "http://slow.example/trickle": "fetch/timeout",
    "http://slow.example/hang": "fetch/timeout",
    "http://big.example/no-cl": "fetch/too_large",
    "http://big.example/bomb": "fetch/too_large",
    "http://big.example/broken-gzip": "fetch/content_encoding_error",
    "http://bin.example/png-as-html": "fetch/not_html",
    "http://r.example/loop-a": "fetch/redirect_loop",
    "http://r.example/chain0": "fetch/too_many_redirects",
    "http://r.example/to-wiki": "fetch/wikipedia_after_redirect",
    "http://r.example/to-metadata": "fetch/private_address",
    "http://r.example/to-loopback": "fetch/private_address",
    "http://robots.example/private/page": "fetch/robots_disallowed",
    "http://robots-500.example/page": "fetch/robots_unreachable",
    "http://169.254.169.254/latest/meta-data/": "fetch/private_address",
    "http://localhost/admin": "fetch/private_address",          # through the proxy too
    "http://metadata.google.internal/computeMetadata/v1/": "fetch/private_address",
    "http://ok.example/": "extract/too_short",          # fetched fine; its text is one word
    "http://cs.example/bad-utf8": "extract/too_short",  # undecodable bytes: no crash, a short text
}
OTHERS = ["http://ok.example/gz", "http://big.example/cl", "http://big.example/brotli", "http://bin.example/image",
          "http://cs.example/bogus", "http://cs.example/meta", "http://r.example/to-reddit", "http://r.example/to-pdf",
          "http://r.example/to-ftp", "http://r.example/ok", "http://cookie.example/article",
          "http://robots-hang.example/page", "http://robots-403.example/page", "http://e.example/missing",
          "http://slow.example/hang-body", "http://e.example/503-once"]


def test_hostile_web_through_the_whole_pipeline(web, tmp_path):  # noqa: F811
    urls = list(EXPECTED) + OTHERS
    lines = [json.dumps({"id": f"h{i}", "url": u, "score": 10, "is_self": False, "over_18": False,
                         "subreddit": "hostile", "created_utc": 1500000000}) for i, u in enumerate(urls)]
    dump = tmp_path / "RS_hostile.zst"
    dump.write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    settings = ["fetch.min_delay=0", "fetch.connect_timeout=1", "fetch.read_timeout=0.3", "fetch.page_timeout=0.6",
                "fetch.robots_timeout=0.4", "fetch.backoff=0.05", "fetch.max_bytes=100000",
                "fetch.max_decompressed_bytes=1000000"]
    # Proxy credentials are a secret: they must not end up in any output (the proxy here ignores them).
    proxy = web.proxy_url.replace("http://", "http://crawler:s3cret-pw@")
    argv = ["run", "--input", str(dump), "--out", str(tmp_path / "out"), "--http-proxy", proxy, "--quiet"]
    for s in settings:
        argv += ["--set", s]
    assert main(argv) == 1   # no document reached the shards: a run that says so and exits 1

    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["unbalanced"] == []
    assert stats["stages"]["source"]["in"] == len(urls)
    drops = {normalize_url(d.url): f"{d.stage}/{d.reason}" for d in read_drops(str(tmp_path / "out"))}
    kept = stats["stages"]["shards"]["out"]
    assert kept == 0                                        # nothing in this web is a real article
    assert {normalize_url(u) for u in urls} == set(drops)   # every link accounted for, by reason
    for url, reason in EXPECTED.items():
        assert drops[normalize_url(url)] == reason, url
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["fetch"]["http_proxy"] == f"http://***@127.0.0.1:{web.port}"
    for path in glob.glob(str(tmp_path / "out" / "**"), recursive=True):
        if os.path.isfile(path):
            assert b"s3cret-pw" not in open(path, "rb").read(), path
