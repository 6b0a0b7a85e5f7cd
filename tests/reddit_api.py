"""A stand-in for Reddit's OAuth API on 127.0.0.1, speaking the real wire format, so praw can talk to it.

What it answers (what praw/prawcore use for a read-only, client-credentials harvest):
  POST /api/v1/access_token      grant_type=client_credentials, HTTP basic auth (client_id:client_secret)
  GET  /r/{sub}/{listing}[/|.json]?limit=&after=&t=&raw_json=1
       -> {"kind": "Listing", "data": {"after": "t3_x" | null, "dist": n, "children": [{"kind": "t3", ...}]}}
Pages hold at most 100 children (Reddit's cap; a listing ends after 1,000), are chained by `after` (the last child's fullname), and every
answer carries x-ratelimit-remaining/used/reset headers. An unknown subreddit is a 302 to the search page,
like reddit.com. `fail_next(status=429, retry_after=...)` answers the next listing request(s) with an error,
and `requests` records every request.

Seed it with real Pushshift dump lines (`dump_items`) or synthesized ones (`synth_items`).
"""
from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional
from urllib.parse import parse_qs, parse_qsl, urlsplit

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
DUMP_2005_07 = CORPUS / "reddit" / "RS_v2_2005-07.zst"
PAGE_CAP = 100          # Reddit returns at most 100 children per listing request
DEFAULT_PAGE = 25       # ... and 25 when no limit is asked for
LISTING_CAP = 1000      # ... and a listing ends after ~1,000 items however many exist
RATE_WINDOW = 600       # seconds; the headers below describe a 1000-requests-per-10-minutes budget
RATE_BUDGET = 1000


class Request(NamedTuple):
    method: str
    path: str
    params: Dict[str, str]
    headers: Dict[str, str]
    status: int


def dump_items(path: Path = DUMP_2005_07, limit: Optional[int] = None) -> List[dict]:
    """Real submission dicts from a Pushshift .zst dump (window log 31, hence max_window_size)."""
    import zstandard
    items = []
    with open(path, "rb") as f:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)
        for line in io.TextIOWrapper(reader, encoding="utf-8"):
            if line.strip():
                items.append(json.loads(line))
            if limit is not None and len(items) >= limit:
                break
    return items


def synth_items(n: int, subreddit: str, start: int = 0, score: int = 5000) -> List[dict]:
    """n submission dicts with the fields a listing returns; ids are unique base-36 over (subreddit, i)."""
    items = []
    for i in range(start, start + n):
        sid = f"{subreddit[:3].lower()}{i:05d}"
        items.append({
            "id": sid, "name": f"t3_{sid}", "title": f"Article {i} in r/{subreddit}", "author": f"user{i % 17}",
            "url": f"https://news{i % 7}.example.com/{subreddit}/story-{i}.html", "domain": f"news{i % 7}.example.com",
            "permalink": f"/r/{subreddit}/comments/{sid}/article_{i}/", "score": score - i, "ups": score - i,
            "num_comments": i % 50, "is_self": False, "over_18": i % 10 == 9, "subreddit": subreddit,
            "subreddit_id": "t5_" + subreddit.lower()[:6], "subreddit_name_prefixed": f"r/{subreddit}",
            "created_utc": 1_500_000_000.0 + 3600 * i, "selftext": "", "stickied": False, "locked": False,
        })
    return items


class RedditAPI:
    """The stand-in server. Use as a context manager; `reddit_kwargs()` gives what praw.Reddit needs."""

    def __init__(self, client_id: str = "standin-client", client_secret: str = "standin-secret"):
        self.client_id, self.client_secret = client_id, client_secret
        self.listings: Dict[str, List[dict]] = {}     # lower-case subreddit -> items in listing order
        self.requests: List[Request] = []
        self.tokens_issued = 0
        self._failures: List[tuple] = []              # (status, retry_after) for the next listing requests
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    # ------------------------------------------------------------------ setup
    def add(self, subreddit: str, items: List[dict]) -> "RedditAPI":
        self.listings.setdefault(subreddit.lower(), []).extend(items)
        return self

    def fail_next(self, status: int = 429, retry_after: Optional[str] = "0.2", times: int = 1) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reddit_kwargs(self) -> dict:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "user_agent": "webtext-tests/0.1 (stand-in)", "oauth_url": self.url, "reddit_url": self.url,
                "check_for_updates": False}

    def listing_requests(self) -> List[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith("/r/")]

    def __enter__(self) -> "RedditAPI":
        api = self

        class Handler(_Handler):
            pass
        Handler.api = api
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ answers
    def _items_for(self, subreddit: str, listing: str) -> Optional[List[dict]]:
        items = self.listings.get(subreddit.lower())
        if items is None and subreddit.lower() == "all":     # r/all: every subreddit together
            items = [it for its in self.listings.values() for it in its]
        if items is None:
            return None
        if listing == "top":
            return sorted(items, key=lambda it: -(it.get("score") or 0))
        if listing == "new":
            return sorted(items, key=lambda it: -(it.get("created_utc") or 0))
        return list(items)

    def _page(self, items: List[dict], params: Dict[str, str]) -> dict:
        limit = min(int(params.get("limit", DEFAULT_PAGE)), PAGE_CAP)
        start = 0
        if params.get("after"):
            names = [it.get("name") or "t3_" + str(it.get("id")) for it in items]
            if params["after"] not in names:
                return _listing([], None)
            start = names.index(params["after"]) + 1
        items = items[:LISTING_CAP]
        page = items[start:start + limit]
        more = start + limit < len(items)
        after = (page[-1].get("name") or "t3_" + str(page[-1].get("id"))) if page and more else None
        return _listing(page, after)


def _listing(page: List[dict], after: Optional[str]) -> dict:
    return {"kind": "Listing", "data": {"after": after, "dist": len(page), "modhash": None, "geo_filter": "",
                                        "children": [{"kind": "t3", "data": it} for it in page], "before": None}}


class _Handler(BaseHTTPRequestHandler):
    api: RedditAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):   # quiet
        pass

    def _send(self, status: int, body: dict, extra: Optional[dict] = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, params: dict, status: int) -> None:
        with self.api._lock:
            self.api.requests.append(Request(self.command, urlsplit(self.path).path, params,
                                             {k.lower(): v for k, v in self.headers.items()}, status))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = dict(parse_qsl(body))
        path = urlsplit(self.path).path
        if path != "/api/v1/access_token":
            self._record(form, 404)
            return self._send(404, {"message": "Not Found", "error": 404})
        expected = base64.b64encode(f"{self.api.client_id}:{self.api.client_secret}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._record(form, 401)
            return self._send(401, {"message": "Unauthorized", "error": 401})
        if form.get("grant_type") != "client_credentials":
            self._record(form, 400)
            return self._send(400, {"error": "unsupported_grant_type"})
        with self.api._lock:
            self.api.tokens_issued += 1
            token = f"standin-token-{self.api.tokens_issued}"
        self._record(form, 200)
        self._send(200, {"access_token": token, "token_type": "bearer", "expires_in": 86400, "scope": "*"})

    def do_GET(self):
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("bearer standin-token-"):
            self._record(params, 401)
            return self._send(401, {"message": "Unauthorized", "error": 401}, {"www-authenticate": 'Bearer realm="reddit"'})
        with self.api._lock:
            used = len(self.api.requests) + 1
            failure = self.api._failures.pop(0) if self.api._failures else None
        rate = {"x-ratelimit-remaining": f"{RATE_BUDGET - used:.1f}", "x-ratelimit-used": str(used),
                "x-ratelimit-reset": str(RATE_WINDOW // 2)}
        if failure:
            status, retry_after = failure
            self._record(params, status)
            extra = dict(rate, **({"Retry-After": retry_after} if retry_after else {}))
            return self._send(status, {"message": "Too Many Requests", "error": status}, extra)
        segs = [s for s in parts.path.removesuffix(".json").split("/") if s]
        if len(segs) != 3 or segs[0] != "r" or segs[2] not in ("top", "new", "hot", "controversial", "rising"):
            self._record(params, 404)
            return self._send(404, {"message": "Not Found", "error": 404}, rate)
        items = self.api._items_for(segs[1], segs[2])
        if items is None:   # reddit.com redirects an unknown subreddit to the search page
            self._record(params, 302)
            return self._send(302, {}, dict(rate, Location=f"/subreddits/search.json?q={segs[1]}"))
        self._record(params, 200)
        self._send(200, self.api._page(items, params), rate)
