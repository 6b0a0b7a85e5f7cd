"""Link rules: which Reddit submissions become outbound links worth fetching.

GPT-2 (Radford et al., 2019, sec. 2.2): "all outbound links from Reddit ... which received at least 3 karma",
Wikipedia removed. Per-submission rules run first (self post, NSFW, date cutoff, blocklists, extensions,
Wikipedia; see crawl/urls.py); then submissions of the same normalized URL merge into one Link whose karma is the
max (default) or the sum (OpenWebText2's choice) over them, and the karma threshold applies to that aggregate.
"""
from __future__ import annotations

import gc
import heapq
import pickle
import zlib
from typing import Dict, Iterable, Optional, Tuple

import apache_beam as beam
from apache_beam.io import fileio

from core.progress import progress_bar
from core.records import DETAIL_CHARS, DROPPED, LINKS, SOURCE, SUBMISSIONS, Drop, Link, Step, Submission, counter, mark
from crawl.sources import dumps
from crawl.urls import (  # noqa: F401  (re-exported: the link stage's rules are imported from here)
    DEFAULT_BLOCKED_DOMAINS, NON_PAGE_EXTENSIONS, TRACKING_PARAMS, WIKIPEDIA_DOMAINS, LinkRules, host_drop_reason,
    host_of, is_wikipedia, judge_url, normalize_url, submission_drop_reason, url_drop_reason)

__all__ = ["HarvestLinks", "LinkRules", "example_order", "normalize_url", "host_of", "is_wikipedia", "judge_url",
           "url_drop_reason", "submission_drop_reason", "host_drop_reason", "DEFAULT_BLOCKED_DOMAINS",
           "WIKIPEDIA_DOMAINS", "NON_PAGE_EXTENSIONS", "TRACKING_PARAMS"]

# ---------------------------------------------------------------------------------------------- Beam
# Submissions that pass the per-submission rules travel merged per URL, in batches: {url: [kmax, ksum,
# {subreddits}, first created, n]} under one of URL_SHARDS keys (a stable hash of the URL), so a dump's
# million lines become a few hundred Beam elements, and karma is still judged on the whole URL's aggregate.
URL_SHARDS = 256
FLUSH_URLS = 1 << 15     # a reader emits its batches when it holds this many URLs (bounds its memory)


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
    """(shard key, pickled batch) pairs: one pickle per batch costs far less than Beam's coder per entry. The
    pickle is zlib-compressed (level 1, ~2.5x on the scale bench's URLs): the local runner holds every batch of
    the dump about three times (grouped, encoded for the merging bundle, decoded there) until the karma threshold
    has run."""
    shards: Dict[int, Dict[str, list]] = {}
    for url, acc in batch.items():
        shards.setdefault(url_shard(url), {})[url] = acc
    return [(key, zlib.compress(pickle.dumps(part, pickle.HIGHEST_PROTOCOL), 1)) for key, part in shards.items()]


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
            kept.append(Drop(stage, reason, url, detail[:DETAIL_CHARS]))
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
        mark(SOURCE)   # the stage's start for its wall time (its counters come at the file's end)
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
                    # A truncated or corrupt archive: what was read before is kept, the rest is one named drop.
                    lines += 1
                    reason, detail = dumps.unreadable_drop(e, name)
                    counts[SOURCE, reason] = counts.get((SOURCE, reason), 0) + 1
                    examples.add(SOURCE, reason, "", detail)
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
    return progress_bar(f"reading {name}", total=total, unit="B", unit_scale=True)


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
        for url, acc in pickle.loads(zlib.decompress(blob)).items():
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

    def infer_output_type(self, input_type):
        # Beam (2.78) would infer Union[TaggedOutput, Link] from the yields and refuse a Link-typed step after it
        return beam.typehints.Any

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
