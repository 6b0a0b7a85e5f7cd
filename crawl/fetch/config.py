"""FetchConfig: every setting of the fetcher, checked once when made (a bad value is a ValueError naming it).

Its own module so that the fetcher and the one-request code (crawl/fetch/exchange.py) both import it without
importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple
from urllib.parse import urlsplit


@dataclass(frozen=True)
class FetchConfig:
    contact: str = ""                   # your URL or e-mail, sent in the User-Agent: site owners ask for one
    user_agent: str = ""                # "" = webtext/0.1 (+contact); product token "webtext" for robots.txt
    connect_timeout: float = 10.0       # seconds per connection attempt
    read_timeout: float = 20.0          # seconds of silence allowed while waiting for bytes
    page_timeout: float = 60.0          # wall clock per page from its first request: every hop, header and byte
                                        # (per fetch round: a chain handed to another host's key starts anew)
    dns_timeout: float = 10.0           # longest wait for one name lookup (a late answer is a transient failure)
    max_bytes: int = 5 * 2**20          # bytes on the wire per response
    max_decompressed_bytes: int = 20 * 2**20   # gzip/deflate bomb cap
    max_redirects: int = 5                        # redirect hops followed (each hop re-checked)
    redirect_rounds: int = 0            # rounds that hand cross-host redirects to the target host's own key
                                        # (pacing across workers); 0: followed inline. See docs/scaling.md
    content_types: Tuple[str, ...] = ("text/html", "application/xhtml+xml")   # media types kept; others are not_html
    http_proxy: Optional[str] = None    # every request goes through it, to the checked address of a name that
                                        # resolves here (by name otherwise: see docs/scaling.md)
    pin_dns: bool = False               # every name must resolve here (else dns_error), also behind a proxy; direct
                                        # requests go to the checked address too (name kept for Host, SNI, TLS)
    proxy_dns_only: bool = False        # behind http_proxy, no lookup here: every name goes to the proxy by name
                                        # (proxy-only DNS where local lookups stall); spelled/special names still refused
    allow_private: bool = False         # True only for loopback demos and tests
    verify_tls: bool = True                       # check TLS certificates
    min_delay: float = 1.0              # seconds from the end of a response to the next request on that host
    per_host_concurrency: int = 1       # requests in flight per host within one worker
    global_concurrency: int = 32        # hosts fetched at once per worker (threads)
    processes: int = -1                 # fetch processes per worker (0: its threads; -1: 1 if local, 2+ cores)
                                        # global_concurrency is shared among them (crawl/fetch/procs.py)
    max_retries: int = 2                # extra attempts on retry_statuses
    retry_statuses: Tuple[int, ...] = (429, 500, 502, 503, 504)   # HTTP statuses retried with backoff
    backoff: float = 2.0                # first retry wait; doubles per retry (Retry-After wins when longer)
    max_retry_wait: float = 60.0        # a longer Retry-After means giving up now
    robots: bool = True                           # honour robots.txt (RFC 9309)
    robots_timeout: float = 10.0                  # seconds for fetching one robots.txt
    robots_max_bytes: int = 500 * 1024            # robots.txt bytes parsed at most, once decoded (RFC 9309 2.5)
    max_crawl_delay: float = 30.0       # robots.txt Crawl-delay is honoured up to this
    circuit_breaker: int = 5            # consecutive network failures before a host's other URLs are given up
    max_urls_per_host_key: int = 500    # giant hosts are split into keys; their delays add up to one per host
    warc_dir: Optional[str] = None      # keep raw responses as WARC + outcomes, and resume from them
    warc_rotate: int = 1000             # outcomes per committed WARC/outcomes file pair
    warc_commit_seconds: float = 5.0    # also commit at least this often: a killed run loses at most this much
    resume_retry: Tuple[str, ...] = ()  # outcomes a rerun fetches again instead of replaying, e.g. ("timeout",)

    def __post_init__(self):
        if not self.user_agent:
            agent = f"webtext/0.1 (+{self.contact})" if self.contact else "webtext/0.1 (research crawl; no contact given)"
            object.__setattr__(self, "user_agent", agent)
        if self.processes < -1:
            raise ValueError("processes must be >= -1 (-1: decided by the runner)")
        if self.per_host_concurrency < 1 or self.global_concurrency < 1 or self.max_urls_per_host_key < 1:
            raise ValueError("fetch concurrency and max_urls_per_host_key must be >= 1")
        for name in ("connect_timeout", "read_timeout", "page_timeout", "robots_timeout", "dns_timeout", "max_bytes",
                     "max_decompressed_bytes", "robots_max_bytes", "warc_rotate", "warc_commit_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("min_delay", "backoff", "max_retry_wait", "max_crawl_delay", "max_retries", "max_redirects",
                     "circuit_breaker", "redirect_rounds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.proxy_dns_only and (self.pin_dns or not self.http_proxy):
            raise ValueError("proxy_dns_only needs http_proxy and excludes pin_dns (which resolves every name here)")
        if self.http_proxy is not None:
            proxy = urlsplit(self.http_proxy)
            if proxy.scheme not in ("http", "https") or not proxy.hostname:
                raise ValueError(f"http_proxy must be an http://host:port URL, got {self.http_proxy!r}")
