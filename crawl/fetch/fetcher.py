"""Fetch: outbound Links -> Pages, politely, safely, and with every link ending in exactly one named outcome.

Plain functions here (testable without Beam); the Beam transform is in crawl/fetch/transform.py, WARC capture in
crawl/fetch/warc.py, address and URL checks in crawl/fetch/safety.py, robots.txt in crawl/fetch/robots.py, body
handling in crawl/fetch/content.py, pacing and error mapping in crawl/fetch/http.py, one request under its
deadline in crawl/fetch/exchange.py (enforced by crawl/fetch/deadline.py).

- `fetch_one(session, link, cfg, rules)` fetches one URL: redirects followed by hand (each hop re-checked against
  the link rules, the address rules and robots.txt), retries with backoff on 429/5xx honouring Retry-After,
  bounded body, content checks.
- `fetch_host(links, cfg, rules, session)` fetches one host's URLs one after another: the delay runs from the end
  of one response to the start of the next request on that host, robots.txt is read once, and a circuit breaker
  ends a dead host's remaining URLs without touching the network.

Outcomes: "ok" or one of DROP_REASONS (see that list). No exception escapes: an unexpected one is "fetch_error".
"""
from __future__ import annotations

import http.cookiejar
import time
from typing import Iterable, Iterator, NamedTuple, Optional, Tuple, Union
from urllib.parse import urljoin

import requests

from crawl.fetch.config import FetchConfig
from crawl.fetch.content import check_content_type, detect_encoding, read_body, sniff_body
from crawl.links import LinkRules, host_of, normalize_url, url_drop_reason
from core.records import Link, Page
from core.retry import retry_wait
from crawl.fetch.exchange import REDIRECTS, Ctx, exchange, failure, get_robots, pacing, Stop, transient
from crawl.fetch.http import FetchSession, Pacer, now, status_outcome
from crawl.fetch.robots import RobotsCache
from crawl.fetch.safety import FetchAdapter, Resolver, sendable_url

DROP_REASONS = (
    "bad_url", "private_address", "dns_error", "connection_error", "tls_error", "timeout", "host_unreachable",
    "robots_disallowed", "robots_unreachable", "http_4xx", "http_429", "http_5xx", "bad_redirect",
    "too_many_redirects", "redirect_loop", "wikipedia_after_redirect", "blocked_after_redirect",
    "non_page_after_redirect", "too_large", "not_html", "content_encoding_error", "fetch_error",
    # the link rules' own reasons, if an unchecked link reaches the fetcher
    "wikipedia", "blocked_domain", "non_page_extension",
)
BREAKER_FAILURES = frozenset({"dns_error", "connection_error", "tls_error", "timeout"})
AFTER_REDIRECT = {"wikipedia": "wikipedia_after_redirect", "blocked_domain": "blocked_after_redirect",
                  "non_page_extension": "non_page_after_redirect"}


class Capture(NamedTuple):
    """The HTTP exchange behind an ok Page, for the WARC writer."""
    request_headers: Tuple[Tuple[str, str], ...]
    status_line: str                    # "200 OK"
    response_headers: Tuple[Tuple[str, str], ...]


class Pending(NamedTuple):
    """A redirect chain handed on to the target host's key: the next hop, already normalized and checked against
    the link rules, and what the chain carried so far."""
    link: Link
    url: str
    hops: int
    cookies: Tuple[Tuple[str, str, str, str], ...]      # (name, value, domain, path)
    seen: Tuple[Tuple[str, tuple], ...]                 # (url, cookies) states already visited: loop detection


DEFERRED = "redirect_deferred"          # not an outcome: the chain goes on in the next round (FetchResult.pending)


class FetchResult(NamedTuple):
    outcome: str                        # "ok" or a DROP_REASONS entry (or DEFERRED, with `pending`)
    page: Optional[Page] = None         # set when outcome == "ok"
    detail: str = ""
    capture: Optional[Capture] = None
    network: bool = True                # False if decided without sending anything (breaker, address checks)
    pending: Optional[Pending] = None


def make_session(cfg: FetchConfig) -> requests.Session:
    """One pooled Session per worker, shared by its threads. No cookie memory across pages (a days-long crawl
    would hoard every site's cookies); cookies live only along one page's redirect chain."""
    s = FetchSession()                  # reads no body itself, not even a redirect's (crawl/fetch/http.py)
    s.trust_env = False                 # no surprises from HTTP_PROXY / NO_PROXY / .netrc
    s.verify = cfg.verify_tls
    s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    pool = dict(pool_connections=max(10, cfg.global_concurrency), pool_maxsize=max(10, cfg.global_concurrency),
                max_retries=0)
    adapter = FetchAdapter(guarded=not (cfg.allow_private or cfg.http_proxy), **pool)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    if cfg.http_proxy:
        s.proxies = {"http": cfg.http_proxy, "https": cfg.http_proxy}
    s.headers.update({"User-Agent": cfg.user_agent, "Accept-Encoding": "gzip, deflate",
                      "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5", "Accept-Language": "en"})
    return s


def fetch_one(session: requests.Session, link: Union[Link, str], cfg: FetchConfig, rules: LinkRules = LinkRules(),
              *, pacer: Optional[Pacer] = None, resolver: Optional[Resolver] = None,
              robots: Optional[RobotsCache] = None, n_keys: float = 1, pace_key: str = "", defer: bool = False,
              start: Optional[Pending] = None) -> FetchResult:
    """Fetch one link; never raises. Pass the pacer/resolver/robots cache shared by a worker's threads (fetch_host
    does); left out, fresh ones are made (robots.txt then is fetched for this call only, if cfg.robots).
    `defer`: a redirect to another host ends as DEFERRED with a Pending instead of being followed here (the Beam
    transform fetches it under the target host's key, so that host's pacing holds across workers); `start`: go
    on with such a Pending."""
    if isinstance(link, str):
        link = Link(link, host_of(link), 0, (), 0)
    if robots is None and cfg.robots:
        robots = RobotsCache(cfg.user_agent)
    ctx = Ctx(session, cfg, rules, pacer or Pacer(cfg.per_host_concurrency),
              resolver or Resolver(timeout=cfg.dns_timeout), robots, host_of(start.url) if start else link.host,
              n_keys, pace_key)
    try:
        return _fetch(ctx, link, defer, start)
    except Exception as e:              # a bug or a library surprise: one link lost, the crawl goes on
        return FetchResult("fetch_error", detail=f"{type(e).__name__}: {e}"[:300])


def _fetch(ctx: Ctx, link: Link, defer: bool, start: Optional[Pending]) -> FetchResult:
    cfg = ctx.cfg
    jar = requests.cookies.RequestsCookieJar()
    if start is None:
        url, why = sendable_url(link.url, normalize_url)     # normalized once: this string is checked and sent
        if url is None:
            return FetchResult("bad_url", detail=f"{why}: {link.url[:200]}", network=False)
        reason = url_drop_reason(url, ctx.rules)
        if reason:
            return FetchResult(reason, detail=url[:200], network=False)
        seen, hops = set(), 0           # (url, cookies) states: the same state twice is a loop
    else:
        url, hops, seen = start.url, start.hops, set(start.seen)
        for name, value, domain, path in start.cookies:
            jar.set(name, value, domain=domain, path=path)
    attempt, retry_wait, deadline, sent = 0, 0.0, None, start is not None
    robots_wait = cfg.page_timeout + cfg.robots_timeout + max(cfg.min_delay, cfg.max_crawl_delay)
    while True:
        host = host_of(url)
        if ctx.robots is not None:
            verdict = ctx.robots.verdict(url, lambda u: get_robots(ctx, u, deadline), wait=robots_wait)
            if verdict and transient(*verdict) and attempt < cfg.max_retries and deadline is None:
                attempt += 1
                time.sleep(cfg.backoff * 2 ** (attempt - 1))    # a DNS hiccup: ask again a little later
                continue
            if verdict:
                outcome = "timeout" if verdict[0] == "deadline" else verdict[0]
                return FetchResult(outcome, detail=verdict[1], network=sent or outcome not in ("private_address",))
        seen.add((url, tuple(sorted(jar.items()))))
        try:
            with exchange(ctx, url, jar, pacing(ctx, url, host, hops == 0, retry_wait), cfg.page_timeout,
                           deadline) as (resp, deadline):
                sent = True
                result, location, retry_wait = _handle(ctx, link, url, resp, deadline, attempt)
                if location:
                    requests.cookies.extract_cookies_to_jar(jar, resp.request, resp.raw)
        except Stop as stop:
            reason, detail, network = stop.args
            if transient(reason, detail) and attempt < cfg.max_retries and deadline is None:
                attempt += 1
                time.sleep(cfg.backoff * 2 ** (attempt - 1))    # a DNS hiccup: ask again a little later
                continue
            return FetchResult(reason, detail=detail, network=sent or network)
        if result is not None:
            return result
        if retry_wait:                  # a 429/5xx we retry: same URL, after the wait, with a fresh page timeout
            attempt, deadline = attempt + 1, None
            continue
        # A redirect: normalized once, then every hop faces the link rules again.
        hops += 1
        if hops > cfg.max_redirects:
            return FetchResult("too_many_redirects", detail=f"more than {cfg.max_redirects} redirects")
        url, why = sendable_url(urljoin(url, location), normalize_url)
        if url is None:
            return FetchResult("bad_redirect", detail=f"redirect to {location[:200]!r}: {why}")
        reason = url_drop_reason(url, ctx.rules)
        if reason in AFTER_REDIRECT:
            return FetchResult(AFTER_REDIRECT[reason], detail=f"redirect to {url[:200]}")
        if reason:
            return FetchResult("bad_redirect", detail=f"redirect to {url[:200]} ({reason})")
        if (url, tuple(sorted(jar.items()))) in seen:
            return FetchResult("redirect_loop", detail=f"back to {url[:200]}")
        if defer and host_of(url) != ctx.key_host:
            cookies = tuple((c.name, c.value or "", c.domain, c.path) for c in jar)
            return FetchResult(DEFERRED, detail=url[:200], pending=Pending(link, url, hops, cookies, tuple(seen)))
        attempt, retry_wait = 0, 0.0


def _handle(ctx: Ctx, link: Link, url: str, resp: requests.Response, deadline: float, attempt: int
            ) -> Tuple[Optional[FetchResult], Optional[str], float]:
    """One response: (final result, None, 0) or (None, redirect location, 0) or (None, None, retry wait)."""
    cfg, status = ctx.cfg, resp.status_code
    if status in REDIRECTS and resp.headers.get("Location"):
        return None, resp.headers["Location"], 0.0
    if status in cfg.retry_statuses:
        wait = retry_wait(resp.headers.get("Retry-After"), attempt, cfg.backoff)
        if attempt >= cfg.max_retries:
            return FetchResult(status_outcome(status), detail=f"HTTP {status} after {attempt} retries"), None, 0.0
        if wait > cfg.max_retry_wait:
            return FetchResult(status_outcome(status),
                               detail=f"HTTP {status}, Retry-After {wait:.0f}s > {cfg.max_retry_wait:.0f}s"), None, 0.0
        return None, None, max(wait, 1e-3)
    if not 200 <= status < 300:
        return FetchResult(status_outcome(status), detail=f"HTTP {status}"), None, 0.0
    ctype = resp.headers.get("Content-Type", "")
    bad = check_content_type(ctype, cfg.content_types)
    if bad:
        return FetchResult("not_html", detail=bad), None, 0.0
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > cfg.max_bytes:
        return FetchResult("too_large", detail=f"Content-Length {length} > {cfg.max_bytes}"), None, 0.0
    try:
        body = read_body(resp.raw, resp.headers.get("Content-Encoding", ""), cfg.max_bytes,
                         cfg.max_decompressed_bytes, deadline)
    except Exception as e:
        reason, detail = failure(e, deadline)
        return FetchResult(reason, detail=detail), None, 0.0
    bad, mtype = sniff_body(ctype, body, cfg.content_types)
    if bad:
        return FetchResult("not_html", detail=bad), None, 0.0
    page = Page(link, url, status, mtype, body, detect_encoding(ctype, body), now())
    sent = tuple((k, v) for k, v in resp.request.headers.items() if k.lower() != "proxy-authorization")  # a secret
    capture = Capture(sent, f"{status} {resp.reason or ''}".strip(),
                      tuple(resp.raw.headers.items()))
    return FetchResult("ok", page, capture=capture), None, 0.0


def fetch_host(links: Iterable[Link], cfg: FetchConfig, rules: LinkRules = LinkRules(),
               session: Optional[requests.Session] = None, *, n_keys: float = 1, pacer: Optional[Pacer] = None,
               resolver: Optional[Resolver] = None, robots: Optional[RobotsCache] = None, pace_key: str = "",
               defer: bool = False) -> Iterator[Tuple[Link, FetchResult]]:
    """One host's links, sorted by URL, fetched one after another. `n_keys` > 1 when the host was split into
    keys (`pace_key` names this one; n_keys is then the host's URL count over this key's, about the key count):
    each key waits n_keys times the delay on its own pacer entry, so the host as a whole still sees one request
    per delay. After `cfg.circuit_breaker` consecutive network failures (transient DNS failures not counted) the
    remaining links end as "host_unreachable" without a request. `defer`: see fetch_one."""
    session = session or make_session(cfg)
    pacer = pacer or Pacer(cfg.per_host_concurrency)
    resolver = resolver or Resolver(timeout=cfg.dns_timeout)
    if robots is None and cfg.robots:
        robots = RobotsCache(cfg.user_agent)
    failures, last = 0, ""
    for link in sorted(links, key=lambda l: l.url):
        if cfg.circuit_breaker and failures >= cfg.circuit_breaker:
            yield link, FetchResult("host_unreachable", detail=f"{failures} consecutive failures, last: {last}"[:300],
                                    network=False)
            continue
        result = fetch_one(session, link, cfg, rules, pacer=pacer, resolver=resolver, robots=robots, n_keys=n_keys,
                           pace_key=pace_key, defer=defer)
        if result.outcome in BREAKER_FAILURES and not transient(result.outcome, result.detail):
            failures, last = failures + 1, f"{result.outcome}: {result.detail}"
        elif result.network:
            failures = 0
        yield link, result


def fetch_pending(chains: Iterable[Pending], cfg: FetchConfig, rules: LinkRules, session: requests.Session, *,
                  pacer: Pacer, resolver: Resolver, robots: Optional[RobotsCache], defer: bool = False
                  ) -> Iterator[Tuple[Link, FetchResult]]:
    """Redirect chains that arrive at one host, one after another (that host's pacing, robots.txt, checks)."""
    for p in sorted(chains, key=lambda p: (p.url, p.link.url)):
        yield p.link, fetch_one(session, p.link, cfg, rules, pacer=pacer, resolver=resolver, robots=robots,
                                defer=defer, start=p)
