"""Link rules and URL normalization: pure functions, then HarvestLinks on FnApiRunner."""
import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from conftest import beam_pipeline, counters
from crawl.links import HarvestLinks, LinkRules, normalize_url, submission_drop_reason, url_drop_reason
from core.records import Submission


@pytest.mark.parametrize("raw, expected", [
    ("HTTP://Example.COM:80/a/../b?utm_source=x&b=2&a=1#frag", "http://example.com/b?a=1&b=2"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("http://example.com/%7euser/a%20b", "http://example.com/~user/a%20b"),
    ("http://bücher.de/", "http://xn--bcher-kva.de/"),
    ("http://user:pw@example.com/x?fbclid=abc", "http://example.com/x"),
    ("  http://example.com/x  ", "http://example.com/x"),
])
def test_normalize_url(raw, expected):
    assert normalize_url(raw) == expected


@pytest.mark.parametrize("raw", ["ftp://example.com/x", "mailto:a@b.c", "example.com/x", "", "http://", "http://a b/"])
def test_normalize_rejects(raw):
    assert normalize_url(raw) is None


@pytest.mark.parametrize("url, reason", [
    ("https://en.wikipedia.org/wiki/GPT-2", "wikipedia"),
    ("https://de.m.wikipedia.org/wiki/X", "wikipedia"),
    ("https://wikipedia.org/", "wikipedia"),
    ("https://i.imgur.com/abc", "blocked_domain"),
    ("https://www.reddit.com/r/x/comments/1/y/", "blocked_domain"),
    ("https://youtu.be/xyz", "blocked_domain"),
    ("https://example.com/pic.JPG", "non_page_extension"),
    ("https://example.com/paper.pdf", "non_page_extension"),
    ("https://example.com/article.html", None),
    ("https://notwikipedia.org/", None),
])
def test_url_drop_reason(url, reason):
    assert url_drop_reason(normalize_url(url), LinkRules()) == reason


def sub(url, karma=5, **kw):
    fields = dict(id="x", url=url, karma=karma, is_self=False, over_18=False, subreddit="s", created_utc=1000)
    fields.update(kw)
    return Submission(**fields)


def test_submission_rules():
    rules = LinkRules(created_before=2000)
    assert submission_drop_reason(sub("http://a.com/", is_self=True), rules) == "self_post"
    assert submission_drop_reason(sub("http://a.com/", over_18=True), rules) == "nsfw"
    assert submission_drop_reason(sub("http://a.com/", over_18=True), LinkRules(drop_nsfw=False)) is None
    assert submission_drop_reason(sub("http://a.com/", created_utc=2000), rules) == "after_cutoff"
    assert submission_drop_reason(sub("not a url"), rules) == "invalid_url"
    assert submission_drop_reason(sub("http://a.com/"), rules) is None


def test_aggregate_config_checked():
    with pytest.raises(ValueError):
        LinkRules(aggregate="mean")


def _harvest(subs, rules):
    p = beam_pipeline()
    out = p | beam.Create(subs) | HarvestLinks(rules)
    links = out["links"] | beam.Map(lambda l: (l.url, l.karma, l.subreddits, l.created_utc, l.submissions))
    return p, links


@pytest.mark.parametrize("aggregate, expected_karma", [("max", 2), ("sum", 4)])
def test_harvest_links_aggregates_per_url(aggregate, expected_karma):
    subs = [
        sub("http://a.com/x", karma=2, subreddit="one", created_utc=50),
        sub("http://A.com/x?utm_source=rss", karma=2, subreddit="two", created_utc=40),   # same URL, normalized
        sub("http://b.com/y", karma=7),
        sub("http://b.com/z", karma=1),
        sub("http://c.com/", karma=9, is_self=True),
    ]
    p, links = _harvest(subs, LinkRules(aggregate=aggregate))
    expected = [("http://b.com/y", 7, ("s",), 1000, 1)]
    if expected_karma >= 3:
        expected.append(("http://a.com/x", expected_karma, ("one", "two"), 40, 2))
    assert_that(links, equal_to(expected))
    c = counters(p.run())
    assert c["submissions.in"] == 5 and c["submissions.drop.self_post"] == 1 and c["submissions.out"] == 4
    assert c["links.in"] == 4 and c["links.drop.duplicate_url"] == 1
    assert c["links.in"] == c["links.out"] + c["links.drop.duplicate_url"] + c.get("links.drop.low_karma", 0)
    assert c["links.out"] == len(expected)
