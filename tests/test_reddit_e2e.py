"""`webtext run --reddit`: praw harvests the stand-in Reddit API, and the crawl fetches exactly the eligible links.

The listing carries the demo dump's submissions (real Pushshift field names), so it plants low karma, self posts,
NSFW, Wikipedia, media and duplicate URLs; the pages are served by the demo web through the proxy."""
import collections
import io
import json

import praw.config
import zstandard

from core.shard_format import open_shard, read_manifest
from crawl.links import LinkRules, normalize_url, url_drop_reason
from pipeline.demo.web import build_demo
from webtext import main
from reddit_api import RedditAPI


def listing_items(dump_path):
    reader = zstandard.ZstdDecompressor(max_window_size=2 ** 31).stream_reader(open(dump_path, "rb"))
    items = []
    for line in io.TextIOWrapper(reader, encoding="utf-8", errors="replace"):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and {"id", "url", "score", "created_utc", "over_18"} <= set(obj):
            items.append(dict(obj, name=f"t3_{obj['id']}"))
    return items


def eligible(items):
    """Independently of the pipeline: max karma per normalized URL >= 3 over non-self, non-NSFW submissions."""
    best = collections.defaultdict(int)
    for it in items:
        url = normalize_url(it["url"])
        if it["is_self"] or it["over_18"] or not url or url_drop_reason(url, LinkRules()):
            continue
        best[url] = max(best[url], it["score"])
    return {u for u, k in best.items() if k >= 3}


def test_live_harvest_fetches_exactly_the_eligible_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(praw.config.Config, "CONFIG", None)
    demo = build_demo(tmp_path / "web")
    items = listing_items(demo.dump_path)
    expected = eligible(items)
    with RedditAPI() as api, demo.web as web:
        api.add("programming", items)
        for key, value in (("praw_client_id", api.client_id), ("praw_client_secret", api.client_secret),
                           ("praw_user_agent", "webtext-tests/0.1")):
            monkeypatch.setenv(key, value)
        (tmp_path / "webtext.toml").write_text(
            f'[reddit]\noauth_url = "{api.url}"\nreddit_url = "{api.url}"\n[fetch]\nmin_delay = 0.05\n')
        assert main(["run", "--reddit", "programming", "--listing", "new", "--config", "webtext.toml",
                     "--http-proxy", web.proxy_url, "--out", "out", "--quiet"]) == 0
        fetched = {f"http://{host}{path}" for _, _, host, path in web.log if not path.startswith("/robots.txt")}
    assert api.listing_requests(), "praw never asked the stand-in for the listing"
    # robots.txt forbids one eligible page: it is the only eligible link not requested.
    assert fetched == expected - {normalize_url(u) for u in demo.planted["robots_disallowed"]}
    assert len(fetched) >= 50
    kept = set()
    for s in read_manifest(tmp_path / "out")["shards"]:
        kept.update(open_shard(tmp_path / "out" / s["name"]).column("url").to_pylist())
    assert kept == set(demo.expected_kept_urls)
