"""The embedded demo: a small generated web on loopback plus a matching Pushshift-style dump.

`build_demo(workdir)` writes `RS_demo.zst` (NDJSON with Pushshift's field names, zstd with a 2 GiB window like
the real dumps) and returns a populated, not yet started `LoopbackWeb`. Six sites with their own boilerplate
(cookie banner, nav, sidebar, related links, comments, footer) carry articles whose bodies are English prose
from the documentation Python ships (`pydoc_data.topics`), so trafilatura has a real article to find.
Beside the normal eligible links it plants every case the pipeline must catch (DEMO_CASES); `planted` lists the
submission URLs of each case and `expected_kept_urls` the normalized URLs that must reach the shards under the
default config (min karma 3, max aggregation, NSFW and self posts dropped, Wikipedia removed).
Same seed -> byte-identical dump and pages (for one Python version: the prose comes from its pydoc_data).
"""
from __future__ import annotations

import datetime
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, NamedTuple, Tuple
from urllib.parse import urlsplit

import zstandard
from pydoc_data.topics import topics

from core.records import DEDUP, EXTRACT, FETCH, LINKS, QUALITY, SOURCE, SUBMISSIONS
from crawl.links import normalize_url
from pipeline.demo.sites import (COMMENTS, GERMAN_ARTICLE, SITES, TINY_JPEG, TINY_PDF, TINY_PNG, Article, Site,
                                 render_home, render_page, render_wikipedia, slugify)
from pipeline.demo.loopback import LoopbackWeb

class PlantedCase(NamedTuple):
    what: str                  # what the demo web hides
    ends: FrozenSet[str]       # how it must end: "stage/reason" of a drop, or "kept"
    both: bool = False         # every outcome in `ends` must appear (one copy kept, the other removed)


def _ends(*outcomes: Tuple[str, str]) -> FrozenSet[str]:
    return frozenset("kept" if stage == "kept" else f"{stage}/{reason}" for stage, reason in outcomes)


KEPT = ("kept", "")
DEMO_CASES: Dict[str, PlantedCase] = {
    "low_karma": PlantedCase("links with karma 1-2, below the 3-karma threshold", _ends((LINKS, "low_karma"))),
    "self_post": PlantedCase("self posts (text on Reddit itself, no outbound link)",
                             _ends((SUBMISSIONS, "self_post"))),
    "nsfw": PlantedCase("a link from a submission marked over_18", _ends((SUBMISSIONS, "nsfw"))),
    "image": PlantedCase("image links (.jpg on a news site, i.imgur.com)",
                         _ends((SUBMISSIONS, "non_page_extension"), (SUBMISSIONS, "blocked_domain"))),
    "pdf": PlantedCase("a link to a .pdf", _ends((SUBMISSIONS, "non_page_extension"))),
    "wikipedia": PlantedCase("Wikipedia pages (en.wikipedia.org, en.m.wikipedia.org)",
                             _ends((SUBMISSIONS, "wikipedia"))),
    "redirect_to_wikipedia": PlantedCase("a blog link that 301-redirects to en.wikipedia.org",
                                         _ends((FETCH, "wikipedia_after_redirect"))),
    "near_duplicate": PlantedCase("one article on two sites with small edits; the lower-karma copy must go",
                                  _ends(KEPT, (DEDUP, "near_duplicate")), both=True),
    "exact_duplicate": PlantedCase("one article body served at two URLs; the lower-karma copy must go",
                                   _ends(KEPT, (DEDUP, "exact_duplicate")), both=True),
    "non_english": PlantedCase("a German article", _ends((EXTRACT, "not_english"))),
    "too_short": PlantedCase("a page whose main text is two sentences",
                             _ends((EXTRACT, "too_short"), (QUALITY, "too_few_words"))),
    "http_404": PlantedCase("a link to a page that does not exist", _ends((FETCH, "http_4xx"))),
    "robots_disallowed": PlantedCase("a page under a path robots.txt disallows for every user-agent",
                                     _ends((FETCH, "robots_disallowed"))),
    "duplicate_submission": PlantedCase(
        "one URL posted twice (karma 2 and 2): max aggregation gives 2, so it is low karma",
        _ends((LINKS, "low_karma"))),
    "tracking_params": PlantedCase("one article posted plain and with ?utm_ parameters: merges into one link",
                                   _ends(KEPT)),
    "malformed_line": PlantedCase("dump lines that are truncated JSON, empty objects, junk bytes or lack fields",
                                  _ends((SOURCE, "malformed_line"))),
    "not_html": PlantedCase("links without a file extension that serve application/octet-stream or image/png",
                            _ends((FETCH, "not_html"))),
}

DUMP_NAME = "RS_demo.zst"
N_NORMAL = 46                         # eligible articles besides the planted ones
START_UTC, END_UTC = 1433116800, 1512000000     # 2015-06-01 .. 2017-11-30: before GPT-2's Dec 2017 cutoff


@dataclass
class Demo:
    web: LoopbackWeb                  # populated, not started
    dump_path: Path
    planted: Dict[str, List[str]]     # case -> submission URLs as written in the dump
    expected_kept_urls: List[str]     # normalized URLs that must end up in the shards
    article_text: Dict[str, str] = field(default_factory=dict)   # normalized URL -> article body (plain text)


# --- prose from pydoc_data.topics ----------------------------------------------------------------------------------

def prose_paragraphs() -> List[Tuple[str, str]]:
    """(section heading, paragraph) for every prose paragraph of Python's bundled docs, reST markup stripped."""
    out, seen = [], set()
    for key in sorted(topics):
        text = topics[key]
        heading = text.strip().split("\n", 1)[0].strip()
        for block in re.split(r"\n\s*\n", text):
            lines = block.split("\n")
            if len(lines) >= 2 and lines[1].strip() and set(lines[1].strip()) <= set("*=-~^"):
                continue                                    # a heading
            if len({len(x) - len(x.lstrip()) for x in lines}) > 1:
                continue                                    # mixed indentation: code or grammar
            para = " ".join(x.strip() for x in lines)
            if re.search(r"::=|>>>|[{}]|\s=\s|^\w+\(.*\)$", para):
                continue                                    # grammar, doctest, code
            para = re.sub(r"\[\d+\]", "", para)             # footnote marks
            para = re.sub(r"\*(\S[^*]*?)\*", r"\1", para)     # *emphasis*
            para = re.sub(r"\s+", " ", para).strip()
            para = para[:-1] + "." if para.endswith(":") else para
            if len(para.split()) < 12 or not para.endswith((".", "?", "!")) or not re.match(r'[A-Z"]', para):
                continue                                    # fragments, lists, continuations
            if para not in seen:
                seen.add(para)
                out.append((heading, para))
    return out


TITLE_PREFIXES = ("", "A closer look at ", "Notes on ", "What every programmer should know about ",
                  "Understanding ", "Explained: ", "How Python handles ")


def make_articles(rng: random.Random, n: int) -> List[Article]:
    """n articles of ~250-550 words; each paragraph used once, so articles are not near-duplicates by accident."""
    pool = prose_paragraphs()
    by_heading: Dict[str, List[str]] = {}
    for heading, para in pool:
        by_heading.setdefault(heading, []).append(para)
    headings = list(by_heading)
    rng.shuffle(headings)
    stream = [(h, p) for h in headings for p in by_heading[h]]   # consecutive paragraphs of one topic stay together
    articles, i, titles = [], 0, set()
    while len(articles) < n:
        if i >= len(stream):
            raise RuntimeError(f"pydoc_data.topics has prose for only {len(articles)} demo articles")
        target, words, paras, heading = rng.randint(250, 550), 0, [], stream[i][0]
        while i < len(stream) and words < target:
            paras.append(stream[i][1])
            words += len(stream[i][1].split())
            i += 1
        prefix = rng.choice(TITLE_PREFIXES)
        title = prefix + (heading[0].lower() + heading[1:] if prefix and not heading.startswith("Python") else heading)
        title = title if title not in titles else f"{title}, part {len(articles)}"
        titles.add(title)
        articles.append(Article(title, tuple(paras)))
    return articles


def near_duplicate_of(article: Article) -> Article:
    """The same story as republished elsewhere: one sentence cut, one added (~90% word 5-gram Jaccard)."""
    paras = list(article.paragraphs)
    first = paras[0].split(". ")
    if len(first) > 1:
        paras[0] = ". ".join(first[:-1]) + "."
    paras[-1] += " This is easy to overlook, but it matters a great deal in everyday code."
    return Article(article.title, tuple(paras))


# --- the dump -----------------------------------------------------------------------------------------------------

def base36(n: int) -> str:
    return (base36(n // 36) if n >= 36 else "") + "0123456789abcdefghijklmnopqrstuvwxyz"[n % 36]


def write_dump(path: Path, lines: List[bytes]) -> None:
    # Streamed, so the frame has no content size and keeps its 2 GiB window (window_log=31, like Pushshift's
    # `zstd --long=31`): readers need ZstdDecompressor(max_window_size=2**31), exactly as with real dumps.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
        for line in lines:
            w.write(line + b"\n")
    path.write_bytes(buf.getvalue())


# --- the demo -----------------------------------------------------------------------------------------------------

def build_demo(workdir: Path, seed: int = 0) -> Demo:
    rng = random.Random(seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    web = LoopbackWeb()
    sites = {s.key: s for s in SITES}
    english = [s for s in SITES if s.lang == "en"]
    planted: Dict[str, List[str]] = {case: [] for case in DEMO_CASES}
    kept: List[str] = []
    article_text: Dict[str, str] = {}
    subs: List[dict] = []                  # submissions, as dicts in Pushshift's field order
    published: Dict[str, List[Tuple[str, str]]] = {s.key: [] for s in SITES}   # site -> (url, title)
    counter = iter(range(1, 10**6))
    pages: Dict[str, str] = {}            # article URL -> HTML

    def page_url(site: Site, title: str) -> str:
        (y, m, d), n = _ymd(rng.randint(START_UTC, END_UTC)), 40000 + 37 * next(counter)
        url = f"http://{site.host}" + site.path.format(y=y, m=m, d=d, n=n, slug=slugify(title))
        return url if url not in pages else page_url(site, f"{title} {n}")     # truncated slugs can collide

    def publish(site: Site, article: Article, url: str = "", comments: bool = True) -> str:
        url = url or page_url(site, article.title)
        others = [t for _, t in published[site.key][-6:]] or ["Welcome to " + site.name]
        comments = tuple(rng.sample(COMMENTS, rng.randint(1, 3))) if comments else ()
        pages[url] = render_page(site, article, url, others, comments, n=len(pages))
        web.add(url, pages[url])
        published[site.key].append((url, article.title))
        article_text[normalize_url(url)] = "\n".join(article.paragraphs)
        return url

    def submit(url: str, karma: int, subreddit: str = "", case: str = "", title: str = "", **extra) -> None:
        site = next((s for s in SITES if s.host in url), None)
        subreddit = subreddit or rng.choice(site.subreddits if site else ("news", "technology"))
        subs.append(dict(url=url, score=karma, subreddit=subreddit, title=title or "Interesting read",
                         created_utc=rng.randint(START_UTC, END_UTC), **extra))
        if case:
            planted[case].append(url)

    pick = iter(make_articles(rng, N_NORMAL + 12))

    # Normal eligible links: karma >= 3, heavy-tailed; a few also posted with low karma elsewhere (max wins).
    for _ in range(N_NORMAL):
        art, site = next(pick), rng.choice(english)
        url = publish(site, art)
        submit(url, 3 + min(int(rng.paretovariate(1.2)) - 1, 4000) if rng.random() < 0.8 else rng.randint(3, 5),
               title=art.title)
        if rng.random() < 0.15:
            submit(url, rng.randint(1, 2), subreddit=rng.choice(("programming", "coding", "Python")), title=art.title)
        kept.append(normalize_url(url))

    # low_karma: good pages, but karma 1 and 2
    for karma in (1, 2):
        art = next(pick)
        submit(publish(rng.choice(english), art), karma, case="low_karma", title=art.title)
    # self_post: text posts pointing back at Reddit
    for sub in ("learnprogramming", "AskReddit"):
        sid = base36(rng.randint(5 * 36**5, 6 * 36**5))
        url = f"https://www.reddit.com/r/{sub}/comments/{sid}/what_is_the_best_way_to_learn_python/"
        submit(url, rng.randint(20, 300), subreddit=sub, case="self_post", is_self=True, id=sid,
               title="What is the best way to learn Python?",
               selftext="I have been programming for a year and want to get better. Any advice?")
    # nsfw: a good page, high karma, but the submission is marked over_18
    art = next(pick)
    submit(publish(sites["techreview"], art), 75, subreddit="WTF", case="nsfw", over_18=True, title=art.title)
    # image: a .jpg on a news site and on i.imgur.com
    for url in ("http://www.example-news.com/images/2016/harbour-at-dusk.jpg", "http://i.imgur.com/Xk3Lm9Q.jpg"):
        web.add(url, TINY_JPEG, content_type="image/jpeg")
        submit(url, rng.randint(30, 900), subreddit="pics", case="image", title="Look at this")
    # pdf
    url = "http://www.science-monthly.org/papers/2017/reference-counting-in-practice.pdf"
    web.add(url, TINY_PDF, content_type="application/pdf")
    submit(url, 41, subreddit="science", case="pdf", title="Reference counting in practice [PDF]")
    # wikipedia: served too, so only the link rules can stop them
    wiki = next(pick)
    wiki_urls = ("http://en.wikipedia.org/wiki/Python_(programming_language)",
                 "http://en.m.wikipedia.org/wiki/Garbage_collection_(computer_science)",
                 "http://en.wikipedia.org/wiki/Generator_(computer_programming)")
    for url in wiki_urls:
        web.add(url, render_wikipedia(wiki, url))
    for url in wiki_urls[:2]:
        submit(url, rng.randint(50, 500), subreddit="todayilearned", case="wikipedia", title="TIL " + wiki.title)
    # redirect_to_wikipedia: the blog link is fine, the hop it redirects to is not
    url = "http://blog.example-dev.net/go/generators"
    web.add_redirect(url, wiki_urls[2])
    submit(url, 33, subreddit="Python", case="redirect_to_wikipedia", title="Generators, explained")
    # near_duplicate: the same story on two sites with small edits; the higher-karma copy stays
    first, second = next(pick), next(pick)                 # a long story: two edits leave ~90% of its 5-grams
    art = Article(first.title, first.paragraphs + second.paragraphs)
    best = publish(sites["news"], art)
    copy = publish(sites["herald"], near_duplicate_of(art))
    submit(best, 60, subreddit="technology", case="near_duplicate", title=art.title)
    submit(copy, 9, subreddit="news", case="near_duplicate", title=art.title)
    kept.append(normalize_url(best))
    # exact_duplicate: the same bytes at two URLs of one site (the article and its print version)
    art = next(pick)
    best = publish(sites["science"], art)
    copy = best.replace("/articles/", "/print/articles/")
    web.add(copy, pages[best])
    submit(best, 12, subreddit="science", case="exact_duplicate", title=art.title)
    submit(copy, 5, subreddit="EverythingScience", case="exact_duplicate", title=art.title)
    kept.append(normalize_url(best))
    # non_english: a German article on a German site
    de = Article(GERMAN_ARTICLE[0], GERMAN_ARTICLE[1:])
    submit(publish(sites["morgenblatt"], de), 30, subreddit="de", case="non_english", title=de.title)
    # too_short: boilerplate around two sentences
    short = Article("Library closes early on Friday",
                    ("The central library will close at noon on Friday for maintenance work.",
                     "Regular opening hours resume on Saturday morning."))
    submit(publish(sites["herald"], short, comments=False), 14, subreddit="news", case="too_short", title=short.title)
    # http_404: a URL on a served host that is not served
    submit("http://www.example-news.com/2016/02/11/this-story-has-moved", 8, case="http_404", title="Moved story")
    # robots_disallowed: a good page under /members/, which robots.txt disallows
    art = next(pick)
    url = publish(sites["herald"], art, url=f"http://www.cityherald.co.uk/members/analysis/{slugify(art.title)}")
    submit(url, 20, subreddit="unitedkingdom", case="robots_disallowed", title=art.title)
    # duplicate_submission: karma 2 and 2 -> max 2 (dropped as low karma; with sum aggregation it would be 4)
    art = next(pick)
    url = publish(rng.choice(english), art)
    submit(url, 2, subreddit="programming", case="duplicate_submission", title=art.title)
    submit(url, 2, subreddit="Python", case="duplicate_submission", title=art.title)
    # tracking_params: plain and with utm_ parameters; both normalize to one link
    art = next(pick)
    url = publish(sites["techreview"], art)
    tracked = url + "?utm_source=twitter&utm_medium=social&utm_campaign=weekly"
    web.add(tracked, pages[url])
    submit(url, 5, case="tracking_params", title=art.title)
    submit(tracked, 11, subreddit="technology", case="tracking_params", title=art.title)
    kept.append(normalize_url(url))
    # not_html: no extension in the URL, but the server says it is not a page
    for url, body, ctype in (
            ("http://www.techreview-weekly.com/downloads/benchmark-results-2016", bytes(range(256)) * 8,
             "application/octet-stream"),
            ("http://www.example-news.com/graphics/unemployment-chart", TINY_PNG, "image/png")):
        web.add(url, body, content_type=ctype)
        submit(url, rng.randint(5, 80), case="not_html", title="Data")

    for site in SITES:                     # home pages and robots.txt for every host
        web.add(f"http://{site.host}/", render_home(site, published[site.key]))
        web.add_robots(site.host, site.robots)
    for host in ("en.wikipedia.org", "en.m.wikipedia.org", "i.imgur.com"):
        web.add_robots(host, "User-agent: *\nDisallow: /w/\nDisallow: /api/\n")

    # Dump lines in time order, like a monthly RS_ file, with malformed lines spliced in.
    subs.sort(key=lambda s: (s["created_utc"], s["url"], s["score"]))
    lines = [json.dumps(_pushshift_record(s, i), separators=(",", ":")).encode() for i, s in enumerate(subs)]
    bad_url = "http://blog.example-dev.net/posts/2016/half-written-line.html"
    missing = {"id": "5q0bad", "url": "http://www.example-news.com/2017/01/09/no-score-here",
               "subreddit": "news", "title": "A line without score or created_utc"}
    malformed = [json.dumps({"id": "5q0cut", "url": bad_url, "score": 17}).encode()[:-12],   # truncated JSON
                 b"{}", b"\x00\xff\xfe\x9c garbage \x80\x81", json.dumps(missing).encode()]
    planted["malformed_line"] += [bad_url, missing["url"]]
    for j, bad in enumerate(malformed):
        lines.insert((j + 1) * len(lines) // (len(malformed) + 1), bad)
    dump_path = workdir / DUMP_NAME
    write_dump(dump_path, lines)
    return Demo(web, dump_path, planted, kept, article_text)


def _ymd(t: int) -> Tuple[int, int, int]:
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.year, d.month, d.day


def _pushshift_record(s: dict, i: int) -> dict:
    url, is_self = s["url"], s.get("is_self", False)
    sid = s.get("id") or base36(36**5 * 3 + 7919 * (i + 1))
    host = re.sub(r"^www\.", "", urlsplit(url).hostname or "")       # Reddit's `domain` drops "www."
    slug = re.sub(r"[^a-z0-9]+", "_", s["title"].lower()).strip("_")[:50]
    return {"id": sid, "author": f"user_{base36(97 * (i + 3))}", "created_utc": s["created_utc"],
            "domain": f"self.{s['subreddit']}" if is_self else host, "is_self": is_self,
            "num_comments": (s["score"] * 7 + i) % 130, "over_18": s.get("over_18", False),
            "permalink": f"/r/{s['subreddit']}/comments/{sid}/{slug}/",
            "retrieved_on": s["created_utc"] + 3600 * 24 * 90,
            "score": s["score"], "selftext": s.get("selftext", ""), "subreddit": s["subreddit"],
            "title": s["title"], "url": url}
