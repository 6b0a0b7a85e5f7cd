"""Link rules: which Reddit submissions become outbound links worth fetching, and URL normalization.

GPT-2 (Radford et al., 2019, sec. 2.2): "all outbound links from Reddit ... which received at least 3 karma",
Wikipedia removed. Per-submission rules run first (self post, NSFW, date cutoff, blocklists, extensions,
Wikipedia); then submissions of the same normalized URL merge into one Link whose karma is the max (default) or
the sum (OpenWebText2's choice) over them, and the karma threshold applies to that aggregate.
"""
from __future__ import annotations

import gc
import heapq
import pickle
import posixpath
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterable, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apache_beam as beam
from apache_beam.io import fileio
from w3lib.url import canonicalize_url

from core.records import DROPPED, LINKS, SOURCE, SUBMISSIONS, Drop, Link, Step, Submission, counter
from crawl.sources import dumps

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
    min_karma: int = 3
    aggregate: str = "max"                 # "max" or "sum" of karma over submissions of one URL
    drop_nsfw: bool = True
    drop_self_posts: bool = True
    created_before: Optional[int] = None   # unix seconds; GPT-2 used links before Dec 2017 (1512086400)
    blocked_domains: Tuple[str, ...] = DEFAULT_BLOCKED_DOMAINS
    wikipedia_domains: Tuple[str, ...] = WIKIPEDIA_DOMAINS
    non_page_extensions: Tuple[str, ...] = NON_PAGE_EXTENSIONS

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


@lru_cache(maxsize=64)
def _domain_set(domains: Tuple[str, ...]) -> frozenset:
    return frozenset(d.lower() for d in domains)


def _suffix_in(host: str, wanted) -> Optional[str]:
    """The first of host, its parent domains, ... that is in `wanted` (a set or dict), or None."""
    while True:
        if host in wanted:
            return host
        dot = host.find(".")
        if dot < 0:
            return None
        host = host[dot + 1:]


def _matches(host: str, domains: Iterable[str]) -> bool:
    """host is one of `domains` or a subdomain of one: a set lookup per label suffix, not a scan of the list."""
    return _suffix_in(host, _domain_set(tuple(domains))) is not None


@lru_cache(maxsize=64)
def _host_reasons(wikipedia: Tuple[str, ...], blocked: Tuple[str, ...]) -> Dict[str, str]:
    reasons = {d.lower(): "blocked_domain" for d in blocked}
    reasons.update({d.lower(): "wikipedia" for d in wikipedia})
    return reasons


def host_drop_reason(host: str, rules: LinkRules) -> Optional[str]:
    """"wikipedia" or "blocked_domain" for a host (Wikipedia first, as url_drop_reason checks), else None."""
    reasons = _host_reasons(rules.wikipedia_domains, rules.blocked_domains)
    while True:
        reason = reasons.get(host)
        if reason is not None:
            return reason
        dot = host.find(".")
        if dot < 0:
            return None
        host = host[dot + 1:]


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


# A URL with a plain lower-case host, no user info or port, ends its host at / ? # or the end; a plain path has
# only unreserved characters and no dot segment. For these, canonicalize_url is the identity on host and path,
# so the host rules can run without it (most media hosts) and the whole normalization is skipped for most
# article links (normalize_url costs ~25 us, three times a JSON parse). tests/test_links.py checks the equivalence.
_PLAIN_HOST = re.compile(r"(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)*)(?=[/?#]|\Z)")
_PLAIN_PATH = re.compile(r"(/[A-Za-z0-9._~/-]*)?\Z")
_SPACE = re.compile(r"[\r\n\t ]")      # normalize_url strips, then rejects a URL with any of these


def judge_url(url: str, rules: LinkRules) -> Tuple[Optional[str], Optional[str]]:
    """(drop reason or None, normalized URL or None): what normalize_url + url_drop_reason give, faster."""
    m = _PLAIN_HOST.match(url)
    if m is not None and _SPACE.search(url, m.end()) is None:
        reason = host_drop_reason(m.group(2), rules)
        if reason is not None:
            return reason, None
        p = _PLAIN_PATH.match(url, m.end())
        if p is not None and "/." not in url:
            path = p.group(1) or "/"
            if path.lower().endswith(rules.non_page_extensions):
                return "non_page_extension", None
            return None, url if p.group(1) else url + "/"
    norm = normalize_url(url)
    if norm is None:
        return "invalid_url", None
    return url_drop_reason(norm, rules), norm


def submission_drop_reason(sub: Submission, rules: LinkRules) -> Optional[str]:
    """Per-submission rules, in the order a reader would check them. Karma is judged later, per URL."""
    if rules.drop_self_posts and sub.is_self:
        return "self_post"
    if rules.drop_nsfw and sub.over_18:
        return "nsfw"
    if rules.created_before is not None and sub.created_utc >= rules.created_before:
        return "after_cutoff"
    return judge_url(sub.url, rules)[0]


# ---------------------------------------------------------------------------------------------- Beam
# Submissions that pass the per-submission rules travel merged per URL, in batches: {url: [kmax, ksum,
# {subreddits}, first created, n]} under one of URL_SHARDS keys (a stable hash of the URL), so a dump's
# million lines become a few hundred Beam elements, and karma is still judged on the whole URL's aggregate.
URL_SHARDS = 256
FLUSH_URLS = 200_000      # a reader emits its batches when it holds this many URLs (bounds its memory)


def url_shard(url: str) -> int:
    return zlib.crc32(url.encode("utf-8", "surrogatepass")) % URL_SHARDS


def add_to(batch: Dict[str, list], url: str, karma: int, subreddit: str, created: int, n: int = 1) -> None:
    acc = batch.get(url)
    if acc is None:
        batch[url] = [karma, karma, {subreddit} if subreddit else set(), created, n]
        return
    if karma > acc[0]:
        acc[0] = karma
    acc[1] += karma
    if subreddit:
        acc[2].add(subreddit)
    if created < acc[3]:
        acc[3] = created
    acc[4] += n


def shard_batches(batch: Dict[str, list]):
    """(shard key, pickled batch) pairs: one pickle per batch costs far less than Beam's coder per entry."""
    shards: Dict[int, Dict[str, list]] = {}
    for url, acc in batch.items():
        shards.setdefault(url_shard(url), {})[url] = acc
    return [(key, pickle.dumps(part, pickle.HIGHEST_PROTOCOL)) for key, part in shards.items()]


def example_order(d: Drop):
    """Which examples of a (stage, reason) are listed when there are more than the cap: the smallest by this."""
    return (zlib.crc32(f"{d.url}\x1f{d.detail}".encode("utf-8", "surrogatepass")), d.url, d.detail)


class Examples:
    """At most `cap` example Drops per (stage, reason), the first ones seen; exact counts live in the counters."""

    def __init__(self, cap: int):
        self.cap, self.kept, self.full = cap, {}, set()

    def add(self, stage: str, reason: str, url: str = "", detail: str = "") -> None:
        kept = self.kept.setdefault((stage, reason), [])
        if len(kept) < self.cap:
            kept.append(Drop(stage, reason, url, detail[:500]))
        if len(kept) >= self.cap:
            self.full.add((stage, reason))

    def drain(self):
        for drops in self.kept.values():
            for d in drops:
                yield beam.pvalue.TaggedOutput(DROPPED, d)
        self.kept = {}


class _FilterSubmissions(Step):
    stage = SUBMISSIONS

    def __init__(self, rules: LinkRules):
        super().__init__()
        self.rules = rules

    def apply(self, sub: Submission):
        if self.rules.drop_self_posts and sub.is_self:
            return self.drop("self_post", sub.url)
        if self.rules.drop_nsfw and sub.over_18:
            return self.drop("nsfw", sub.url)
        if self.rules.created_before is not None and sub.created_utc >= self.rules.created_before:
            return self.drop("after_cutoff", sub.url)
        reason, url = judge_url(sub.url, self.rules)
        if reason:
            return self.drop(reason, sub.url)
        batch: Dict[str, list] = {}
        add_to(batch, url, sub.karma, sub.subreddit, sub.created_utc)
        return shard_batches(batch)[0]


class _ReadDump(beam.DoFn):
    """One dump or URL-list file -> URL batches, with stages "source" (in = non-empty lines, out = submissions,
    drop.malformed_line) and "submissions" (per-submission rules) counted in bulk: a dropped line costs a JSON
    parse and a few comparisons, never a Beam element. A bytes-read progress bar (tqdm) runs unless quiet."""

    def __init__(self, rules: LinkRules, default_karma: int, max_line: int, examples: int, quiet: bool):
        super().__init__()
        self.rules, self.default_karma, self.max_line = rules, default_karma, max_line
        self.examples, self.quiet = examples, quiet

    def process(self, readable):
        name = readable.metadata.path
        short = name.rsplit("/", 1)[-1]
        rules, examples = self.rules, Examples(self.examples)
        full = examples.full                 # (stage, reason) pairs with all their examples: skip the call
        cutoff = rules.created_before
        counts: Dict[Tuple[str, str], int] = {}
        batch_urls: Dict[str, list] = {}
        lines = subs = 0
        bar = _progress(short, readable.metadata.size_in_bytes, self.quiet)
        # The cyclic GC would walk the growing URL batch again and again while JSON parsing allocates millions of
        # dicts; nothing built here forms a cycle, so it is paused while this file is read.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            with readable.open(compression_type=dumps.CompressionTypes.UNCOMPRESSED) as raw:
                stream = dumps.CountingReader(raw, bar.update if bar else None)
                try:
                    for batch in dumps.iter_fields(stream, name, self.default_karma, self.max_line):
                        lines += len(batch)
                        for lineno, fields in batch:
                            if type(fields) is str:
                                stage = SOURCE, "malformed_line"
                                if stage not in full:
                                    examples.add(SOURCE, "malformed_line", "", f"{short}:{lineno}: {fields}")
                                counts[stage] = counts.get(stage, 0) + 1
                                continue
                            url, karma, is_self, over_18, created, subreddit, _ = fields
                            subs += 1
                            if is_self and rules.drop_self_posts:
                                reason = "self_post"
                            elif over_18 and rules.drop_nsfw:
                                reason = "nsfw"
                            elif cutoff is not None and created >= cutoff:
                                reason = "after_cutoff"
                            else:
                                reason, norm = judge_url(url, rules)
                                if reason is None:
                                    add_to(batch_urls, norm, karma, subreddit,
                                           created)
                                    if len(batch_urls) >= FLUSH_URLS:
                                        yield from shard_batches(batch_urls)
                                        batch_urls = {}
                                    continue
                            stage = SUBMISSIONS, reason
                            if stage not in full:
                                examples.add(SUBMISSIONS, reason, url)
                            counts[stage] = counts.get(stage, 0) + 1
                except dumps.UNREADABLE as e:
                    # A truncated or corrupt archive: keep what was read, count the rest as one malformed line.
                    lines += 1
                    counts[SOURCE, "malformed_line"] = counts.get((SOURCE, "malformed_line"), 0) + 1
                    examples.add(SOURCE, "malformed_line", "", f"{name}: unreadable from here on ({e})")
        finally:
            if gc_was_on:
                gc.enable()
            if bar:
                bar.close()
        yield from shard_batches(batch_urls)
        yield from examples.drain()
        counter(SOURCE, "files").inc()
        counter(SOURCE, "in").inc(lines)
        counter(SOURCE, "out").inc(subs)
        counter(SUBMISSIONS, "in").inc(subs)
        dropped = 0
        for (stage, reason), n in counts.items():
            counter(stage, f"drop.{reason}").inc(n)
            dropped += n if stage == SUBMISSIONS else 0
        counter(SUBMISSIONS, "out").inc(subs - dropped)


def _progress(name: str, total: int, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=f"reading {name}", unit="B", unit_scale=True, unit_divisor=1024,
                mininterval=1.0, leave=False)


def _normalized_host(url: str) -> str:
    """host_of for a normalized URL (lower-case host, no user info) without urlsplit, unless it is an IPv6 literal."""
    netloc = url.split("/", 3)[2]
    if "[" in netloc or "@" in netloc:
        return host_of(url)
    return netloc.partition(":")[0]


def merge_batches(batches) -> Dict[str, list]:
    """One shard's batches (pickled) merged per URL: karma max and sum, subreddits, first seen, count."""
    merged: Dict[str, list] = {}
    for blob in batches:
        for url, acc in pickle.loads(blob).items():
            mine = merged.get(url)
            if mine is None:
                merged[url] = acc
            else:
                kmax, ksum, subs, first, n = acc
                if kmax > mine[0]:
                    mine[0] = kmax
                mine[1] += ksum
                mine[2] |= subs
                if first < mine[3]:
                    mine[3] = first
                mine[4] += n
    return merged


class _KarmaThreshold(beam.DoFn):
    """Stage "links": in = submissions that passed; out = unique links with enough aggregated karma; drops
    duplicate_url (merged into a link, counted) and low_karma (at most `examples` of them listed per shard)."""

    def __init__(self, rules: LinkRules, examples: int):
        super().__init__()
        self.rules, self.examples = rules, examples

    def process(self, kv):
        merged = merge_batches(kv[1])
        n_in = out = dups = 0
        low = []
        by_sum = self.rules.aggregate == "sum"
        for url, (kmax, ksum, subs, first, n) in merged.items():
            n_in += n
            dups += n - 1
            karma = ksum if by_sum else kmax
            if karma < self.rules.min_karma:
                low.append((url, karma))
                continue
            out += 1
            yield Link(url, _normalized_host(url), karma, tuple(sorted(subs)), first, n)
        # a share of the examples cap per shard, chosen by the order WriteDrops keeps: the same whatever the order
        share = -(-self.examples // URL_SHARDS)
        for drop in heapq.nsmallest(share, (Drop(LINKS, "low_karma", url, f"karma={k}") for url, k in low),
                                    key=example_order):
            yield beam.pvalue.TaggedOutput(DROPPED, drop)
        for name, n in (("in", n_in), ("out", out), ("drop.duplicate_url", dups), ("drop.low_karma", len(low))):
            if n:
                counter(LINKS, name).inc(n)


class HarvestLinks(beam.PTransform):
    """Submissions and/or dump files -> eligible outbound Links (tagged outputs: `links`, `dropped`).

    Apply it to a PCollection of Submissions (e.g. from ReadReddit), or to the pipeline itself when there are only
    `dumps` (file patterns of Pushshift dumps or URL lists, read here so that their lines never become elements).
    """

    def __init__(self, rules: LinkRules = LinkRules(), dumps: Iterable[str] = (), default_karma: Optional[int] = None,
                 max_line: int = dumps.MAX_LINE, examples: int = 2000, quiet: bool = True):
        super().__init__()
        self.rules, self.dumps = rules, list(dumps)
        self.default_karma = rules.min_karma if default_karma is None else default_karma
        self.max_line, self.examples, self.quiet = max_line, examples, quiet

    def expand(self, pcoll):
        batches, dropped = [], []
        if not isinstance(pcoll, beam.pvalue.PBegin):
            checked = pcoll | "PerSubmissionRules" >> beam.ParDo(_FilterSubmissions(self.rules)).with_outputs(
                DROPPED, main="kept")
            batches.append(checked.kept)
            dropped.append(checked[DROPPED])
        if self.dumps:
            read = (pcoll.pipeline
                    | "DumpPatterns" >> beam.Create(self.dumps)
                    | "MatchDumps" >> fileio.MatchAll()
                    | "OpenDumps" >> fileio.ReadMatches()
                    | "ReadDumps" >> beam.ParDo(_ReadDump(self.rules, self.default_karma, self.max_line,
                                                          self.examples, self.quiet)).with_outputs(DROPPED, main="kept"))
            batches.append(read.kept)
            dropped.append(read[DROPPED])
        if not batches:
            batches.append(pcoll.pipeline | "NoBatches" >> beam.Create([]))
        links = (batches
                 | "AllBatches" >> beam.Flatten()
                 | "ByShard" >> beam.GroupByKey()   # not CombinePerKey: its lifted accumulators would be
                                                    # re-encoded entry by entry; a batch is merged once, here
                 | "KarmaThreshold" >> beam.ParDo(_KarmaThreshold(self.rules, self.examples)).with_outputs(
                     DROPPED, main="links"))
        dropped.append(links[DROPPED])
        return {"links": links.links, DROPPED: dropped | "FlattenDrops" >> beam.Flatten()}
