"""Live-API source: praw talking HTTP to the stand-in Reddit API on 127.0.0.1 (tests/reddit_api.py)."""
import base64
import json
import time

import apache_beam as beam
import praw.config
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from prawcore.exceptions import TooManyRequests

from crawl.sources.reddit import (RedditConfig, RedditCredentialsError, ReadReddit, harvest_subreddit, listing_items,
                          make_reddit, submission_from_item)
from core.records import Drop, NAMESPACE, Submission
from reddit_api import DUMP_2005_07, RedditAPI, dump_items, synth_items


@pytest.fixture(autouse=True)
def clean_praw_config(monkeypatch, tmp_path):
    """No credentials from the machine: empty cwd and ~/.config, no praw_* variables, praw.ini re-read."""
    for key in ("praw_client_id", "praw_client_secret", "praw_user_agent", "praw_site", "PRAW_ALLOW_ENDPOINT_OVERRIDE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(praw.config.Config, "CONFIG", None)   # praw caches praw.ini once per process


@pytest.fixture
def api(monkeypatch):
    with RedditAPI() as server:
        monkeypatch.setenv("praw_client_id", server.client_id)
        monkeypatch.setenv("praw_client_secret", server.client_secret)
        monkeypatch.setenv("praw_user_agent", "webtext-tests/0.1 (by u/nobody)")
        yield server


def cfg_for(api, *subreddits, **kw):
    return RedditConfig(subreddits or ("programming",), oauth_url=api.url, reddit_url=api.url, **kw)


def test_pagination_past_100_items(api):
    api.add("programming", synth_items(250, "programming"))
    subs = list(harvest_subreddit(cfg_for(api), "programming"))
    assert len(subs) == 250 and len({s.id for s in subs}) == 250
    assert [s.karma for s in subs] == sorted((s.karma for s in subs), reverse=True)   # top: by score
    assert all(s.source == "reddit-api" and s.subreddit == "programming" for s in subs)
    pages = api.listing_requests()
    assert [r.path for r in pages] == ["/r/programming/top"] * 3
    assert [r.params.get("after") for r in pages] == [None, "t3_pro00099", "t3_pro00199"]
    assert all(r.params["t"] == "all" for r in pages)
    token = [r for r in api.requests if r.path == "/api/v1/access_token"]
    assert len(token) == 1 and token[0].params == {"grant_type": "client_credentials"}
    assert token[0].headers["authorization"] == "Basic " + base64.b64encode(b"standin-client:standin-secret").decode()
    assert pages[0].headers["authorization"] == "bearer standin-token-1"
    assert pages[0].headers["user-agent"].startswith("webtext-tests/0.1")


@pytest.mark.skipif(not DUMP_2005_07.exists(), reason="../shared/corpus/reddit absent")
def test_real_dump_lines_through_praw(api):
    items = dump_items()                       # 1,079 real submissions from July 2005, all r/reddit.com
    api.add("reddit.com", items)
    subs = list(harvest_subreddit(cfg_for(api, "reddit.com", limit=None), "reddit.com"))
    assert len(subs) == 1000                   # listings end at ~1,000 items: why dumps are the history source
    assert len(api.listing_requests()) == 10
    by_id = {it["id"]: it for it in items}
    for s in subs:
        it = by_id[s.id]
        assert s == Submission(it["id"], it["url"], it["score"], it["is_self"], it["over_18"], "reddit.com",
                               int(it["created_utc"]), "reddit-api")
    assert min(s.karma for s in subs) >= max(it["score"] for it in items if it["id"] not in {s.id for s in subs})


def test_429_with_retry_after_is_retried_mid_listing(api):
    api.add("programming", synth_items(250, "programming"))
    reddit = make_reddit(cfg_for(api))
    items = listing_items(reddit, "programming", cfg_for(api))
    first = next(items)                        # page 1 fetched
    api.fail_next(status=429, retry_after="0.3")
    t0 = time.monotonic()
    rest = list(items)
    assert time.monotonic() - t0 >= 0.3        # waited as told
    ids = [first["id"]] + [d["id"] for d in rest]
    assert len(ids) == 250 and len(set(ids)) == 250
    statuses = [r.status for r in api.listing_requests()]
    assert statuses == [200, 429, 200, 200]
    assert api.listing_requests()[1].params["after"] == api.listing_requests()[2].params["after"] == "t3_pro00099"


def test_429_retries_are_bounded(api):
    api.add("programming", synth_items(10, "programming"))
    api.fail_next(status=429, retry_after="0", times=3)
    with pytest.raises(TooManyRequests):
        list(harvest_subreddit(cfg_for(api, retries=2), "programming"))
    assert [r.status for r in api.listing_requests()] == [429, 429, 429]


def test_missing_fields(api):
    items = synth_items(6, "science")
    del items[0]["subreddit"]                  # seen in real data: defaults to the harvested subreddit
    del items[1]["score"]                      # no karma: malformed
    del items[2]["is_self"]
    items[2]["domain"] = "self.science"        # ... derived from the domain
    del items[3]["over_18"]                    # unknown NSFW flag: malformed, must not pass the NSFW rule
    items[4]["created_utc"] = None
    api.add("science", items)
    cfg = cfg_for(api, "science", listing="hot")   # "hot": the stand-in keeps the order given
    data = list(listing_items(make_reddit(cfg), "science", cfg))
    results = [submission_from_item(d, "science") for d in data]
    assert len(api.listing_requests()) == 1    # no extra request per item for missing attributes
    assert results[0].subreddit == "science" and isinstance(results[0], Submission)
    assert isinstance(results[1], Drop) and results[1].reason == "malformed_item" and "score" in results[1].detail
    assert results[2].is_self is True
    assert isinstance(results[3], Drop) and "over_18" in results[3].detail
    assert isinstance(results[4], Drop) and "created_utc" in results[4].detail
    assert isinstance(results[5], Submission) and results[5].over_18 is False
    assert submission_from_item({**items[0]}, "all").subreddit == ""   # r/all: unknown stays unknown
    assert [s.id for s in harvest_subreddit(cfg, "science")] == [items[i]["id"] for i in (0, 2, 5)]


def test_missing_credentials_message():
    with pytest.raises(RedditCredentialsError) as e:
        make_reddit(RedditConfig(("programming",)))
    msg = str(e.value)
    assert "\n" not in msg and "client_id" in msg
    for name in ("praw_client_id", "praw_client_secret", "praw_user_agent", "--praw-site"):
        assert name in msg
    with pytest.raises(RedditCredentialsError, match=r"no site \[nosuch\]"):
        make_reddit(RedditConfig(("programming",), praw_site="nosuch"))


def test_missing_secret_and_wrong_secret(api, monkeypatch):
    monkeypatch.delenv("praw_client_secret")
    with pytest.raises(RedditCredentialsError, match=r"missing \(client_secret\)"):
        make_reddit(cfg_for(api))
    monkeypatch.setenv("praw_client_secret", "wrong")
    api.add("programming", synth_items(3, "programming"))
    with pytest.raises(RedditCredentialsError, match="rejected"):
        list(harvest_subreddit(cfg_for(api), "programming"))


@pytest.mark.parametrize("where", ["cwd", "user"])
def test_praw_ini_site_gives_credentials_and_endpoints(where, tmp_path, recwarn):
    with RedditAPI() as api:
        api.add("programming", synth_items(120, "programming"))
        ini = (f"[standin]\nclient_id={api.client_id}\nclient_secret={api.client_secret}\n"
               f"user_agent=webtext-tests/0.1 via praw.ini\noauth_url={api.url}\nreddit_url={api.url}\n")
        ini_dir = tmp_path if where == "cwd" else tmp_path / "xdg"
        ini_dir.mkdir(exist_ok=True)
        (ini_dir / "praw.ini").write_text(ini)
        subs = list(harvest_subreddit(RedditConfig(("programming",), praw_site="standin"), "programming"))
    assert len(subs) == 120
    assert api.listing_requests()[0].headers["user-agent"].startswith("webtext-tests/0.1 via praw.ini")
    # praw warns when a praw.ini in the working directory redirects the endpoints (credential capture risk)
    overrides = [w for w in recwarn if "overrides the oauth_url and reddit_url" in str(w.message)]
    assert len(overrides) == (1 if where == "cwd" else 0)


def run_read_reddit(cfg, out_dir):
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | ReadReddit(cfg)
    for name in ("submissions", "dropped"):
        (out[name] | f"Json{name}" >> beam.Map(lambda r: json.dumps(r._asdict()))
         | f"Write{name}" >> beam.io.WriteToText(str(out_dir / name), shard_name_template=""))
    result = p.run()
    result.wait_until_finish()
    read = lambda name, cls: [cls(**json.loads(line)) for line in (out_dir / name).read_text().splitlines()]
    subs, drops = read("submissions", Submission), read("dropped", Drop)
    counters = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    return subs, drops, counters


def test_read_reddit_beam_two_subreddits_counters_add_up(api, tmp_path):
    science = synth_items(80, "science")
    del science[5]["url"]
    science[6]["score"] = None
    api.add("programming", synth_items(120, "programming")).add("science", science)
    subs, drops, c = run_read_reddit(cfg_for(api, "programming", "science", "no_such_sub"), tmp_path)
    assert len(subs) == 198 and len({s.id for s in subs}) == 198
    assert {s.subreddit for s in subs} == {"programming", "science"}
    assert sorted(d.reason for d in drops) == ["malformed_item"] * 2
    assert c["source.in"] == 200 and c["source.out"] == 198 and c["source.drop.malformed_item"] == 2
    assert c["source.in"] == c["source.out"] + sum(v for k, v in c.items() if k.startswith("source.drop."))
    assert c["source.subreddit_unavailable"] == 1   # unknown name: redirected to search, skipped, counted


def test_read_reddit_overlapping_listings_keep_one_per_id(api, tmp_path):
    api.add("programming", synth_items(30, "programming")).add("science", synth_items(20, "science"))
    subs, drops, c = run_read_reddit(cfg_for(api, "programming", "all", listing="new", limit=None), tmp_path)
    assert len(subs) == 50 and len({s.id for s in subs}) == 50
    assert c["source.in"] == 80 and c["source.out"] == 50 and c["source.drop.duplicate_item"] == 30
    assert sorted(d.reason for d in drops) == ["duplicate_item"] * 30
    assert all(r.params.get("t") is None for r in api.listing_requests())   # no time filter on "new"


def test_config_validation():
    cfg = RedditConfig(["r/programming", "/r/science/"])
    assert cfg.subreddits == ("programming", "science")
    for bad in ({"listing": "best"}, {"time_filter": "decade"}, {"limit": 0}, {"subreddits": ()}):
        with pytest.raises(ValueError):
            RedditConfig(**bad)
