"""One HTTP exchange of the fetcher, and robots.txt through it: check the host, take the pacer's slots, send the
exact checked URL (to the checked address with pin_dns) under one wall-clock deadline that the watchdog
(crawl/fetch/deadline.py) enforces on every socket read. Used by crawl/fetch/fetcher.py."""
from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from typing import NamedTuple, Optional, Tuple
from urllib.parse import urljoin, urlsplit

import requests

from crawl.fetch.config import FetchConfig
from crawl.fetch.content import read_body
from crawl.fetch.deadline import WATCHDOG
from crawl.fetch.http import Pacer, classify, send
from crawl.fetch.robots import RobotsCache
from crawl.fetch.safety import Resolver, ip_literal, pinned, sendable_url, vet_host
from crawl.links import LinkRules, host_of, normalize_url

REDIRECTS = (301, 302, 303, 307, 308)


class Ctx(NamedTuple):
    """What one host's fetching shares between pages (all thread-safe)."""
    session: requests.Session
    cfg: FetchConfig
    rules: LinkRules
    pacer: Pacer
    resolver: Resolver
    robots: Optional[RobotsCache]
    key_host: str = ""
    n_keys: float = 1.0                 # this key's delay factor (transform.key_share; ~ the key count)
    pace_key: str = ""                  # the pacer entry of this host key's own requests


class Stop(Exception):
    """A hop that ends the page: (outcome, detail, whether anything reached the network)."""


def pacing(ctx: Ctx, url: str, host: str, own: bool, wait: float = 0.0) -> Tuple[Tuple[str, float, bool], ...]:
    """The pacer slots a request takes, in order: (entry, delay, from_start). A split host's key paces the starts
    of its own URLs on its own entry at n_keys x the delay, so the host sees one request per delay in total
    however its keys are placed on workers; then, like everything else (robots.txt, redirect hops), the host's
    entry at the plain delay, which on one worker keeps any two requests to the host a delay apart. (Making each
    key also wait n_keys x the delay on the shared host entry is what slowed a split host n_keys-fold.)
    `wait`: a Retry-After to honour."""
    delay = ctx.cfg.min_delay
    if ctx.robots is not None:
        delay = max(delay, min(ctx.robots.crawl_delay(url), ctx.cfg.max_crawl_delay))
    host_slot = (host, max(delay, wait), False)
    if own and ctx.n_keys > 1 and host == ctx.key_host:
        return (ctx.pace_key or f"{host}#", delay * ctx.n_keys, True), host_slot
    return (host_slot,)


@contextmanager
def exchange(ctx: Ctx, url: str, jar, pace: Tuple[Tuple[str, float, bool], ...], budget: float,
             deadline: Optional[float]):
    """Check the host, wait for its turn, send `url` exactly (to its checked address with pin_dns), under one
    wall-clock deadline that the watchdog enforces on every socket read. Yields (response, deadline); a deadline
    of None starts when the request goes out. Raises Stop."""
    cfg, host = ctx.cfg, host_of(url)
    lookup_wait = cfg.dns_timeout if deadline is None else max(0.01, deadline - time.monotonic())
    bad, addrs = vet_host(host, cfg.allow_private, bool(cfg.http_proxy), ctx.resolver, cfg.pin_dns, lookup_wait,
                          not cfg.proxy_dns_only)
    if bad:
        raise Stop(bad[0], bad[1], False)
    target, headers = url, None
    if (cfg.pin_dns or cfg.http_proxy) and addrs and ip_literal(host) is None:   # checked here: send there
        addr = next((a for a in addrs if ":" not in a), addrs[0])
        target, headers = pinned(url, addr), {"Host": urlsplit(url).netloc}
    with ExitStack() as slots:
        tickets = [slots.enter_context(ctx.pacer.slot(entry, delay, from_start)) for entry, delay, from_start in pace]
        started = time.monotonic()
        for ticket in tickets:   # a key's rate counts from the request, not from before the host entry's wait
            ticket[0] = started
        deadline = deadline or started + budget
        left = deadline - started
        if left <= 0:
            raise Stop("timeout", "page timeout before the request", False)
        with WATCHDOG.deadline(deadline):
            try:
                resp = send(ctx.session, target, jar, (min(cfg.connect_timeout, left), min(cfg.read_timeout, left)),
                            deadline, headers)
            except Exception as e:
                raise Stop(*failure(e, deadline), True) from None
            with resp:
                if time.monotonic() >= deadline:    # cut mid-headers: http.client may still hand back a response
                    raise Stop("timeout", "page timeout while reading the headers", True)
                yield resp, deadline


def transient(reason: str, detail: str) -> bool:
    """A lookup that timed out or got EAI_AGAIN (crawl/fetch/safety.py Resolver): worth asking again, and not a
    sign that the host is dead (the circuit breaker does not count it)."""
    return reason == "dns_error" and "transient" in detail


def failure(e: BaseException, deadline: float) -> Tuple[str, str]:
    if time.monotonic() >= deadline:    # the watchdog cut the socket, or a read ran into the deadline
        return "timeout", f"page timeout ({type(e).__name__})"
    return classify(e)


def get_robots(ctx: Ctx, robots_url: str, page_deadline: Optional[float] = None) -> Tuple[int, bytes, str, str]:
    """RobotsGetter: /robots.txt through the same session, proxy, checks and pacing, within robots_timeout and the
    page's own deadline. Cut short by the page's deadline, it answers "deadline" (not judged, not cached)."""
    cfg = ctx.cfg
    url, jar = sendable_url(robots_url, normalize_url)[0] or robots_url, requests.cookies.RequestsCookieJar()
    own = time.monotonic() + cfg.robots_timeout
    deadline = min(own, page_deadline or own)
    for _ in range(6):                  # RFC 9309: follow at least five redirects
        try:
            with exchange(ctx, url, jar, pacing(ctx, url, host_of(url), False), 0, deadline) as (r, _):
                location = r.headers.get("Location")
                if r.status_code in REDIRECTS and location:
                    requests.cookies.extract_cookies_to_jar(jar, r.request, r.raw)
                    url, why = sendable_url(urljoin(url, location), normalize_url)
                    if url is None:
                        return 0, b"", "bad_redirect", why
                    continue
                if not 200 <= r.status_code < 300:
                    return r.status_code, b"", "", ""       # its body is not read: the connection is closed
                try:    # RFC 9309 2.5: the first robots_max_bytes once decoded, however large the whole
                    body = read_body(r.raw, r.headers.get("Content-Encoding", ""),
                                     max(cfg.max_bytes, cfg.robots_max_bytes), cfg.robots_max_bytes, deadline,
                                     truncate=True)
                except Exception as e:      # a 2xx whose body could not be read: the status tells judge() so
                    reason, detail = failure(e, deadline)
                    return (0 if reason == "timeout" else r.status_code), b"", \
                        ("deadline" if reason == "timeout" and deadline < own else reason), detail
                return r.status_code, body, "", ""
        except Stop as stop:
            reason, detail, _ = stop.args
            if reason == "timeout" and deadline < own:
                return 0, b"", "deadline", detail
            return 0, b"", reason, detail
    return 0, b"", "too_many_redirects", url[:200]
