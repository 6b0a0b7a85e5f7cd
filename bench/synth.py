"""Synthetic WebText inputs for bench/scale.py: a Pushshift-style dump and a loopback web, both from a seed.

Standard library only (plus `zstandard` for the dump), and no import of the pipeline, so it survives the
pipeline's module moves.

The dump (`write_dump`): NDJSON with Pushshift's field set (id, name, url, score, ups, upvote_ratio, is_self,
over_18, subreddit, subreddit_id, created_utc, retrieved_on, domain, permalink, title, selftext, author,
num_comments, ...), zstd with a 2 GiB window (window_log=31, like `zstd --long=31`), streamed to disk. Rates
(roughly Reddit 2015-2017, see RATES): ~40% self posts, ~6% NSFW, ~62% of submissions under 3 karma (many 1s),
link posts split into images/video hosts (imgur, i.redd.it, youtube, gfycat ...), media extensions (.jpg, .pdf),
~1.5% Wikipedia, and articles on hosts drawn from a Zipf law (s=1.05); ~8% of link posts repost an earlier article
URL (another subreddit, sometimes with utm_* tracking parameters). A size is given either as documents (stop
when that many distinct article URLs are eligible: not self, not NSFW, karma >= 3) or as submissions.

The web (`serve`): one threaded HTTP/1.1 server on 127.0.0.1 that acts as a forward proxy for every host name.
Pages are generated on request from the article id at the end of the URL path (`...-<id>` or `...-<id>.html`):
sentences from an order-2 word Markov chain over the prose Python ships in pydoc_data.topics, wrapped in one of three site
templates (nav, byline, related links, comments, footer). Per article id (a stable hash decides): ~3% 404,
~2% stubs too short to keep, ~1% non-English, ~3% exact copies and ~3% near copies (about 10% of sentences
edited) of an earlier article. robots.txt is a 404 (allow all). Generating a page costs ~60 us (after a ~1 s start).
A later month (bench/grow.py): `write_dump(..., prior=<earlier article URLs>, start=<its submissions>)` continues
its ids and time and reposts its URLs too; `serve --older-below N` makes ~5% of the ids >= N exact and ~5% near
copies of a random id < N (the earlier month's pages at new URLs); ids < N are served as without it.

    python bench/synth.py dump --docs 1e4 --seed 1 --out RS_synth.zst
    python bench/synth.py serve --seed 1 --port-file PORT     (prints the port to PORT, serves until killed)
    python bench/synth.py serve ... --real-pages ../shared/corpus/pages   (the corpus's English pages instead of
                                                                           generated ones, same ids and 404s)
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
from functools import lru_cache
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Sequence, Tuple

RATES = {
    "self": 0.40, "nsfw": 0.06, "repost": 0.08, "utm_on_repost": 0.3,
    # of link posts that are not reposts:
    "media_host": 0.33, "media_ext": 0.05, "wikipedia": 0.015,
    # per article id, on the web:
    "http_404": 0.03, "stub": 0.02, "foreign": 0.01, "exact_dup": 0.03, "near_dup": 0.03,
    # per article id at or above the web's `older_below` (a later month, bench/grow.py): copies of an article id
    # below it (an earlier month's page at a new URL: syndication, mirrors, scrapers)
    "exact_old": 0.05, "near_old": 0.05,
}
MEDIA_HOSTS = ("i.imgur.com", "imgur.com", "i.redd.it", "v.redd.it", "www.youtube.com", "youtu.be", "gfycat.com",
               "streamable.com", "vimeo.com", "www.reddit.com")
MEDIA_EXT = (".jpg", ".png", ".gif", ".pdf", ".mp4", ".gifv")
SUBREDDITS = ("AskReddit", "funny", "pics", "worldnews", "news", "todayilearned", "science", "technology",
              "gaming", "politics", "videos", "movies", "Music", "books", "programming", "Python", "space",
              "history", "Futurology", "dataisbeautiful", "europe", "canada", "sports", "nba", "soccer",
              "personalfinance", "explainlikeimfive", "askscience", "gadgets", "environment")
TLDS = (".com", ".com", ".com", ".org", ".net", ".co.uk", ".io", ".de", ".info")
FOREIGN = ("der die und das ist nicht mit von den zu auf eine ein sich des dem auch es an als wird bei oder "
           "nach werden aus wie noch nur zum wir haben kann sind mehr schon wenn über diese einer gegen").split()


# ------------------------------------------------------------------------------------------------- prose
@lru_cache(maxsize=1)
def sentences() -> Tuple[str, ...]:
    """English sentences from pydoc_data.topics, markup stripped: the prose, not code or grammar."""
    from pydoc_data.topics import topics
    out, seen = [], set()
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            lines = block.split("\n")
            if len({len(x) - len(x.lstrip()) for x in lines}) > 1:
                continue
            para = " ".join(x.strip() for x in lines)
            if re.search(r"::=|>>>|[{}\\|]|^\w+\(.*\)$|\*\*", para):
                continue
            para = re.sub(r"\[\d+\]|[`*]", "", para)
            para = re.sub(r"\s+", " ", para).strip()
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para):
                words = s.split()
                if 6 <= len(words) <= 45 and s.endswith((".", "?", "!")) and s[0].isupper() and s not in seen:
                    seen.add(s)
                    out.append(s)
    return tuple(out)


def _h(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=1)
def _chain() -> Tuple[Dict[Tuple[str, str], List[str]], List[Tuple[str, str]]]:
    """Order-2 word Markov chain over the sentences: novel but English-looking sentences without limit."""
    chain: Dict[Tuple[str, str], List[str]] = {}
    starts = []
    for s in sentences():
        words = s.split()
        starts.append((words[0], words[1]))
        for a, b, c in zip(words, words[1:], words[2:] + ["\n"]):
            chain.setdefault((a, b), []).append(c)
    return chain, starts


def markov_sentence(rng: random.Random) -> str:
    chain, starts = _chain()
    a, b = starts[rng.randrange(len(starts))]
    out = [a, b]
    while len(out) < 45:
        nxt = chain.get((a, b))
        if not nxt:
            break
        c = nxt[rng.randrange(len(nxt))]
        if c == "\n":
            break
        out.append(c)
        a, b = b, c
    s = " ".join(out)
    return s if s.endswith((".", "?", "!")) else s.rstrip(",;:") + "."


POOL_SIZE = 50_000


@lru_cache(maxsize=4)
def markov_pool(seed: int) -> Tuple[str, ...]:
    """POOL_SIZE Markov sentences made once per seed (~1 s): pages sample them, so a page costs ~50 us."""
    rng = random.Random(_h("pool", seed))
    return tuple(markov_sentence(rng) for _ in range(POOL_SIZE))


def article_text(aid: int, seed: int) -> Tuple[str, List[List[str]]]:
    """(title, paragraphs of sentences) of article `aid`: 8-40 sentences from the Markov pool."""
    pool = markov_pool(seed)
    rng = random.Random(_h("article", seed, aid))
    n = rng.randint(8, 40)
    picks = [pool[rng.randrange(POOL_SIZE)] for _ in range(n)]
    paras, i = [], 0
    while i < n:
        k = rng.randint(2, 5)
        paras.append(picks[i:i + k])
        i += k
    title = " ".join(picks[0].split()[:rng.randint(4, 9)]).rstrip(".,;:")
    return title, paras


def page_kind(aid: int, seed: int, older_below: Optional[int] = None) -> str:
    u = (_h("kind", seed, aid) % 100_000) / 100_000
    later = older_below is not None and aid >= older_below
    for kind in ("http_404", "stub", "foreign", "exact_dup", "near_dup") + (("exact_old", "near_old") if later else ()):
        if u < RATES[kind]:
            return kind
        u -= RATES[kind]
    return "ok"


def page_content(aid: int, seed: int, older_below: Optional[int] = None) -> Optional[Tuple[str, List[List[str]]]]:
    """Title and paragraphs the page of article `aid` shows, or None for a 404. With `older_below`, ids from it
    up may also copy any id below it (kinds exact_old, near_old)."""
    kind = page_kind(aid, seed, older_below)
    if kind == "http_404":
        return None
    if kind in ("exact_dup", "near_dup", "exact_old", "near_old") and aid > 0:
        if kind.endswith("_old"):
            src = _h("src", seed, aid) % older_below
        else:
            src = max(0, aid - 1 - _h("src", seed, aid) % 200)
        title, paras = article_text(src, seed)
        if kind.startswith("near"):
            rng = random.Random(_h("edit", seed, aid))
            pool = markov_pool(seed)
            paras = [[(pool[rng.randrange(POOL_SIZE)] if rng.random() < 0.1 else s) for s in p] for p in paras]
        return title, paras
    title, paras = article_text(aid, seed)
    if kind == "stub":
        return title, [paras[0][:1]]
    if kind == "foreign":
        rng = random.Random(_h("foreign", seed, aid))
        paras = [[" ".join(rng.choice(FOREIGN) for _ in range(rng.randint(8, 20))).capitalize() + "."
                  for _ in p] for p in paras]
    return title, paras


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


REAL_PAGES: List[bytes] = []   # set by load_real_pages: serve these instead of generated pages


def load_real_pages(directory: str) -> List[bytes]:
    """The English, non-Wikipedia pages of a folder like ../shared/corpus/pages (its expectations.json says which),
    in file-name order, as the web's pages from now on: a real page costs ~10x a generated one to extract."""
    meta = json.loads((Path(directory) / "expectations.json").read_text())
    names = sorted(n for n, m in meta.items() if m.get("lang_attr") == "en" and not m.get("is_wikipedia"))
    REAL_PAGES[:] = [(Path(directory) / n).read_bytes() for n in names]
    return REAL_PAGES


def render_page(host: str, aid: int, seed: int, older_below: Optional[int] = None) -> Optional[bytes]:
    content = page_content(aid, seed, older_below)
    if content is None:
        return None
    if REAL_PAGES:      # the same 404s and ids; the page is one of the real ones (so most are exact duplicates)
        return REAL_PAGES[_h("real", seed, aid) % len(REAL_PAGES)]
    title, paras = content
    t = _h("tpl", host) % 3
    site = host.split(".")[-2] if host.count(".") else host
    nav = "".join(f'<li><a href="/section/{w}">{w.title()}</a></li>'
                  for w in ("news", "world", "tech", "science", "opinion", "sport")[: 3 + t])
    body = "".join("<p>" + _esc(" ".join(p)) + "</p>\n" for p in paras)
    related = "".join(f'<li><a href="/{2016 + (aid + k) % 3}/related-story-{aid * 7 + k}">Related story {k}</a></li>'
                      for k in range(1, 5))
    byline = f'<p class="byline">By Staff Writer {aid % 97} | {1 + aid % 28} March 2017</p>'
    comments = ("" if t == 2 else '<section class="comments"><h3>Comments</h3><div class="comment"><p>Great '
                'read, thanks for sharing.</p></div><div class="comment"><p>I disagree with some of this.</p>'
                '</div></section>')
    html = (f'<!doctype html><html lang="{"de" if page_kind(aid, seed, older_below) == "foreign" else "en"}"><head>'
            f'<meta charset="utf-8"><title>{_esc(title)} | {site}</title>'
            f'<meta name="description" content="{_esc(title)}"></head><body>'
            f'<header><div class="logo">{site}</div><nav><ul>{nav}</ul></nav></header>'
            f'<div class="{("content", "main-wrap", "page")[t]}"><article><h1>{_esc(title)}</h1>{byline}\n'
            f'{body}</article><aside><h3>Most read</h3><ul>{related}</ul></aside></div>{comments}'
            f'<footer><p>&copy; 2017 {site}. All rights reserved.</p><a href="/privacy">Privacy</a> '
            f'<a href="/terms">Terms</a></footer></body></html>')
    return html.encode("utf-8")


# ------------------------------------------------------------------------------------------------- dump
def base36(n: int) -> str:
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + s
        if not n:
            return s


WORDS = ("daily", "times", "post", "tribune", "herald", "journal", "review", "wire", "report", "gazette", "news",
         "tech", "science", "world", "open", "blue", "north", "city", "river", "signal", "data", "lab", "pulse",
         "ledger", "beacon", "insider", "digest", "planet", "core", "metro")


def host_name(rank: int) -> str:
    r = random.Random(_h("host", rank))
    return f"www.{r.choice(WORDS)}{r.choice(WORDS)}{rank}{r.choice(TLDS)}"


def score_of(rng: random.Random) -> int:
    u = rng.random()
    if u < 0.12:
        return 0
    if u < 0.52:
        return 1
    if u < 0.62:
        return 2
    return min(100_000, 3 + int(rng.paretovariate(0.8)) - 1 + rng.randrange(3))


def write_dump(path: str, seed: int, docs: Optional[int] = None, submissions: Optional[int] = None,
               prior: Sequence[str] = (), start: int = 0) -> dict:
    """Write the dump; stop at `docs` eligible distinct article URLs or after `submissions` lines. Returns counts.
    A later month (bench/grow.py): `prior` are an earlier dump's article URLs in id order (reposts may pick them;
    new article ids continue after them; `docs` counts only new URLs), `start` its number of submissions (ids and
    created_utc continue after it)."""
    import zstandard
    assert (docs is None) != (submissions is None)
    rng = random.Random(seed)
    expected_articles = docs if docs is not None else max(1, submissions // 9)
    n_hosts = max(20, expected_articles // 4)
    cum = []
    acc = 0.0
    for r in range(1, n_hosts + 1):
        acc += 1.0 / r ** 1.05
        cum.append(acc)
    pool = sentences()
    articles: List[str] = list(prior)   # article URLs so far (reposts pick among them); the id is the index
    prior_set = set(prior)
    prior_eligible = set()
    eligible: Dict[str, int] = {}     # normalized-ish URL -> 1 once eligible
    counts = {"submissions": 0, "self": 0, "nsfw": 0, "media": 0, "wikipedia": 0, "article_posts": 0, "reposts": 0}
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    t0 = 1420070400   # 2015-01-01
    tmp = path + ".part"
    with open(tmp, "wb") as f, zstandard.ZstdCompressor(compression_params=params).stream_writer(f) as w:
        i = 0
        while True:
            if submissions is not None and i >= submissions:
                break
            if docs is not None and len(eligible) >= docs:
                break
            sid = base36(36 ** 5 * 3 + 7919 * (start + i + 1))
            sub = SUBREDDITS[min(len(SUBREDDITS) - 1, int(rng.paretovariate(1.0)) - 1)]
            score = score_of(rng)
            nsfw = rng.random() < RATES["nsfw"]
            created = t0 + (start + i) * 7 + rng.randrange(7)
            title = " ".join(pool[rng.randrange(len(pool))].split()[:rng.randint(5, 14)]).rstrip(".,;:")
            slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:50]
            permalink = f"/r/{sub}/comments/{sid}/{slug}/"
            is_self = rng.random() < RATES["self"]
            selftext, kind = "", ""
            if is_self:
                url = f"https://www.reddit.com{permalink}"
                domain = f"self.{sub}"
                selftext = " ".join(pool[rng.randrange(len(pool))] for _ in range(rng.randint(0, 4)))
                counts["self"] += 1
            else:
                u = rng.random()
                if articles and u < RATES["repost"]:
                    url = articles[rng.randrange(len(articles))]
                    if rng.random() < RATES["utm_on_repost"]:
                        url += "?utm_source=reddit&utm_medium=social"
                    kind = "article"
                    counts["reposts"] += 1
                elif u < RATES["repost"] + RATES["media_host"]:
                    host = MEDIA_HOSTS[rng.randrange(len(MEDIA_HOSTS))]
                    ext = rng.choice(MEDIA_EXT[:3]) if host.startswith("i.") else ""
                    url = f"https://{host}/{base36(rng.getrandbits(40))}{ext}"
                    counts["media"] += 1
                elif u < RATES["repost"] + RATES["media_host"] + RATES["media_ext"]:
                    host = host_name(bisect.bisect_left(cum, rng.random() * acc) + 1)
                    url = f"http://{host}/files/{slug[:20]}{rng.choice(MEDIA_EXT)}"
                    counts["media"] += 1
                elif u < RATES["repost"] + RATES["media_host"] + RATES["media_ext"] + RATES["wikipedia"]:
                    url = f"https://en.wikipedia.org/wiki/{slug.title()[:30]}"
                    counts["wikipedia"] += 1
                else:
                    host = host_name(bisect.bisect_left(cum, rng.random() * acc) + 1)
                    aid = len(articles)
                    ext = ".html" if _h("ext", host) % 3 == 0 else ""
                    url = f"http://{host}/{2015 + created // 31_536_000 % 3}/{slug[:40].replace('_', '-')}-{aid}{ext}"
                    articles.append(url)
                    kind = "article"
                    counts["article_posts"] += 1
                domain = re.sub(r"^www\.", "", url.split("/")[2])
            if nsfw:
                counts["nsfw"] += 1
            if kind == "article" and not nsfw and score >= 3:
                if url.split("?", 1)[0] in prior_set:
                    prior_eligible.add(url.split("?", 1)[0])
                else:
                    eligible[url.split("?", 1)[0]] = 1
            rec = {
                "archived": False, "author": f"user_{base36(_h('author', seed, rng.randrange(1 << 20)) % 36 ** 7)}",
                "author_flair_text": None, "created_utc": created, "distinguished": None, "domain": domain,
                "edited": False, "gilded": 0, "hidden": False, "id": sid, "is_self": is_self,
                "is_video": domain == "v.redd.it", "link_flair_text": None, "locked": False, "name": f"t3_{sid}",
                "num_comments": int(score * rng.random() * 0.8), "over_18": nsfw, "permalink": permalink,
                "retrieved_on": created + 86400 * 90, "score": score, "selftext": selftext, "spoiler": False,
                "stickied": False, "subreddit": sub, "subreddit_id": f"t5_{base36(_h('sr', sub) % 36 ** 5)}",
                "thumbnail": "self" if is_self else "default", "title": title, "ups": score,
                "upvote_ratio": round(0.5 + rng.random() / 2, 2), "url": url,
            }
            w.write(json.dumps(rec).encode() + b"\n")
            i += 1
        counts["submissions"] = i
    os.replace(tmp, path)
    counts["eligible_article_urls"] = len(eligible)
    if prior:
        counts["eligible_prior_urls"] = len(prior_eligible)
        counts["first_aid"] = len(prior)
        counts["articles"] = len(articles)
    counts["hosts"] = n_hosts
    counts["bytes"] = os.path.getsize(path)
    return counts


# ------------------------------------------------------------------------------------------------- web
_AID = re.compile(r"-(\d+)(?:\.html)?$")
NOT_FOUND = b"<!doctype html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SynthWeb/1.0"
    timeout = 60

    def setup(self):
        super().setup()
        # Headers and body go out as two writes; with Nagle on, the second waits for the client's delayed ACK
        # (~40 ms per request on Linux loopback), which made this web, not the crawler, the bottleneck.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self, head: bool = False):
        target = self.path
        if target.startswith("http://") or target.startswith("https://"):
            rest = target.split("://", 1)[1]
            host, _, path = rest.partition("/")
        else:
            host, path = self.headers.get("Host", ""), target.lstrip("/")
        path = "/" + path.split("?", 1)[0]
        host = host.split(":", 1)[0].lower()
        m = _AID.search(path)
        body = render_page(host, int(m.group(1)), self.server.seed, self.server.older_below) if m else None
        status = 200 if body is not None else 404
        body = body if body is not None else NOT_FOUND
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self.server.served += 1

    def do_HEAD(self):
        self.do_GET(head=True)

    def log_message(self, *args):
        pass


class SynthServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, seed: int, port: int = 0, older_below: Optional[int] = None):
        super().__init__(("127.0.0.1", port), _Handler)
        self.seed, self.served, self.older_below = seed, 0, older_below

    def handle_error(self, request, client_address):
        pass


def serve(seed: int, port_file: Optional[str] = None, port: int = 0, older_below: Optional[int] = None,
          real_pages: Optional[str] = None) -> None:
    markov_pool(seed)
    if real_pages:
        load_real_pages(real_pages)
    server = SynthServer(seed, port, older_below)
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(port_file + ".tmp", port_file)
    else:
        print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.2)


def start_in_thread(seed: int) -> Tuple[SynthServer, str]:
    server = SynthServer(seed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _num(s: str) -> int:
    return int(float(s))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--docs", type=_num)
    d.add_argument("--submissions", type=_num)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--out", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--port-file")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--older-below", type=_num, help="article ids from this one up may copy one below it")
    s.add_argument("--real-pages", help="serve the English pages of this folder (e.g. ../shared/corpus/pages, "
                                        "with its expectations.json) instead of generated ones")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        print(json.dumps(write_dump(args.out, args.seed, docs=args.docs, submissions=args.submissions)))
    else:
        serve(args.seed, args.port_file, args.port, args.older_below, args.real_pages)


if __name__ == "__main__":
    sys.exit(main())
