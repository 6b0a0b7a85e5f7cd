"""Link rules: which Reddit submissions become outbound links worth fetching, and URL normalization.

GPT-2 (Radford et al., 2019, sec. 2.2): "all outbound links from Reddit ... which received at least 3 karma",
Wikipedia removed. Per-submission rules run first (self post, NSFW, date cutoff, blocklists, extensions,
Wikipedia); then submissions of the same normalized URL merge into one Link whose karma is the max (default) or
the sum (OpenWebText2's choice) over them, and the karma threshold applies to that aggregate.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apache_beam as beam
from w3lib.url import canonicalize_url

from core.records import DROPPED, LINKS, SUBMISSIONS, Link, Step, Submission

# Hosts whose submissions are not pages of prose: Reddit itself and image/video/audio hosts.
DEFAULT_BLOCKED_DOMAINS = (
    "reddit.com", "redd.it", "redditmedia.com", "redditstatic.com", "reddituploads.com",
    "imgur.com", "gfycat.com", "giphy.com", "tinypic.com", "photobucket.com", "flickr.com", "instagram.com",
    "youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "streamable.com", "twitch.tv", "liveleak.com",
    "soundcloud.com", "spotify.com", "bandcamp.com",
)
WIKIPEDIA_DOMAINS = ("wikipedia.org", "wikipedia.com")
NON_PAGE_EXTENSIONS = (
    # images
    ".jpg", ".jpeg", ".png", ".gif", ".gifv", ".webp", ".bmp", ".svg", ".tif", ".tiff", ".ico", ".heic",
    # video / audio
    ".mp4", ".webm", ".mov", ".avi", ".mkv", ".flv", ".wmv", ".m4v", ".mp3", ".wav", ".ogg", ".flac", ".m4a",
    # documents and archives
    ".pdf", ".doc", ".docx", ".ppt", ".pptx", ".xls", ".xlsx", ".ps", ".epub",
    ".zip", ".gz", ".tgz", ".tar", ".rar", ".7z", ".bz2", ".xz", ".exe", ".dmg", ".iso", ".apk", ".bin", ".torrent",
)
# Query parameters that only track the click; dropping them merges the same article posted twice.
TRACKING_PARAMS = frozenset({
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_name", "utm_reader",
    "fbclid", "gclid", "dclid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid", "_ga", "_gl",
    "ref_src", "ref_url", "cmpid", "ncid", "rss", "feature",
})


@dataclass(frozen=True)
class LinkRules:
    min_karma: int = 3                            # GPT-2: outbound links with at least 3 karma
    aggregate: str = "max"                 # "max" or "sum" of karma over submissions of one URL
    drop_nsfw: bool = True                        # drop links from submissions marked over_18
    drop_self_posts: bool = True                  # drop self posts (text on Reddit, no outbound link)
    created_before: Optional[int] = None   # unix seconds; GPT-2 used links before Dec 2017 (1512086400)
    blocked_domains: Tuple[str, ...] = DEFAULT_BLOCKED_DOMAINS   # Reddit itself and image/video/audio hosts
    wikipedia_domains: Tuple[str, ...] = WIKIPEDIA_DOMAINS   # GPT-2 removed all Wikipedia (also after redirects)
    non_page_extensions: Tuple[str, ...] = NON_PAGE_EXTENSIONS   # URL path endings that are not pages (images, PDFs, ...)

    def __post_init__(self):
        if self.aggregate not in ("max", "sum"):
            raise ValueError(f"links.aggregate must be 'max' or 'sum', not {self.aggregate!r}")


def normalize_url(url: str) -> Optional[str]:
    """Canonical form of an http(s) URL, or None if it is not one.

    Lower-cases scheme and host (IDNA for non-ASCII hosts), drops default ports, fragments, user info and
    tracking parameters, sorts the query and normalizes percent-encoding (w3lib's canonicalize_url), resolves
    dot segments, and gives an empty path as "/".
    """
    url = (url or "").strip()
    if not url or any(c in url for c in "\r\n\t "):
        return None
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return None
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return None
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
        port = parts.port
    except (ValueError, UnicodeError):
        return None
    netloc = host if ":" not in host else f"[{host}]"   # IPv6 literal
    if port and not (scheme == "http" and port == 80) and not (scheme == "https" and port == 443):
        netloc += f":{port}"
    path = parts.path or "/"
    if "/." in path:
        trailing = path.endswith("/")
        path = posixpath.normpath(path) + ("/" if trailing and path != "/" else "")
        path = "/" + path.lstrip("/")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k.lower() not in TRACKING_PARAMS])
    return canonicalize_url(urlunsplit((scheme, netloc, path, query, "")), keep_fragments=False)


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _matches(host: str, domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def is_wikipedia(url_or_host: str, rules: LinkRules = LinkRules()) -> bool:
    host = host_of(url_or_host) if "/" in url_or_host else url_or_host.lower()
    return _matches(host, rules.wikipedia_domains)


def url_drop_reason(url: str, rules: LinkRules) -> Optional[str]:
    """Why a normalized URL must not be fetched (also applied to every redirect hop), or None."""
    host = host_of(url)
    if not host:
        return "invalid_url"
    if _matches(host, rules.wikipedia_domains):
        return "wikipedia"
    if _matches(host, rules.blocked_domains):
        return "blocked_domain"
    if urlsplit(url).path.lower().endswith(rules.non_page_extensions):
        return "non_page_extension"
    return None


def submission_drop_reason(sub: Submission, rules: LinkRules) -> Optional[str]:
    """Per-submission rules, in the order a reader would check them. Karma is judged later, per URL."""
    if rules.drop_self_posts and sub.is_self:
        return "self_post"
    if rules.drop_nsfw and sub.over_18:
        return "nsfw"
    if rules.created_before is not None and sub.created_utc >= rules.created_before:
        return "after_cutoff"
    url = normalize_url(sub.url)
    if url is None:
        return "invalid_url"
    return url_drop_reason(url, rules)


# ---------------------------------------------------------------------------------------------- Beam
class _FilterSubmissions(Step):
    stage = SUBMISSIONS

    def __init__(self, rules: LinkRules):
        super().__init__()
        self.rules = rules

    def apply(self, sub: Submission):
        reason = submission_drop_reason(sub, self.rules)
        if reason:
            return self.drop(reason, sub.url)
        return normalize_url(sub.url), sub


class _LinkCombine(beam.CombineFn):
    """Merges submissions of one URL without holding them all: (karma max, karma sum, subreddits, first, n)."""

    def create_accumulator(self):
        return (None, 0, frozenset(), None, 0)

    def add_input(self, acc, sub: Submission):
        kmax, ksum, subs, first, n = acc
        return (sub.karma if kmax is None else max(kmax, sub.karma), ksum + sub.karma,
                subs | ({sub.subreddit} if sub.subreddit else frozenset()),
                sub.created_utc if first is None else min(first, sub.created_utc), n + 1)

    def merge_accumulators(self, accs):
        accs = [a for a in accs if a[4]]
        if not accs:
            return self.create_accumulator()
        return (max(a[0] for a in accs), sum(a[1] for a in accs), frozenset().union(*(a[2] for a in accs)),
                min(a[3] for a in accs), sum(a[4] for a in accs))

    def extract_output(self, acc):
        return acc


class _KarmaThreshold(Step):
    """Stage "links": in = submissions that passed; out = unique links with enough aggregated karma."""
    stage = LINKS

    def __init__(self, rules: LinkRules):
        super().__init__()
        self.rules = rules

    def process(self, kv):
        url, (kmax, ksum, subs, first, n) = kv
        self.count("in", n)
        if n > 1:
            self.count("drop.duplicate_url", n - 1)   # merged into this link: accounted for, not lost
        link = Link(url, host_of(url), ksum if self.rules.aggregate == "sum" else kmax,
                    tuple(sorted(subs)), first, n)
        if link.karma < self.rules.min_karma:
            link = self.drop("low_karma", url, f"karma={link.karma}")
        yield from self.emit(link)


class HarvestLinks(beam.PTransform):
    """Submissions -> eligible outbound Links (tagged outputs: `links`, `dropped`)."""

    def __init__(self, rules: LinkRules = LinkRules()):
        super().__init__()
        self.rules = rules

    def expand(self, submissions):
        checked = submissions | "PerSubmissionRules" >> beam.ParDo(_FilterSubmissions(self.rules)).with_outputs(
            DROPPED, main="kept")
        links = (checked.kept
                 | "MergeByURL" >> beam.CombinePerKey(_LinkCombine())
                 | "KarmaThreshold" >> beam.ParDo(_KarmaThreshold(self.rules)).with_outputs(DROPPED, main="links"))
        dropped = (checked[DROPPED], links[DROPPED]) | "FlattenDrops" >> beam.Flatten()
        return {"links": links.links, DROPPED: dropped}
