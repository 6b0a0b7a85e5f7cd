"""FetchPages: the fetch stage as one Beam transform. Links -> {"pages": Page (ok only), "dropped": Drop}.

Politeness has to hold across workers, so a host is fetched by one DoFn call:
    Links -> key by host (giant hosts split into host#k keys) -> GroupByKey -> _FetchHosts
    -> redirect chains that leave for another host, keyed by that host -> GroupByKey -> _FetchHosts (round 1) ...
A split host's keys each pace their own URLs at (host URLs / key URLs) x the delay, which adds up to one request
per delay for the host wherever the keys run; `redirect_rounds` rounds later, the last one follows the rest inline.
_FetchHosts runs many host groups at once in a thread pool of `global_concurrency`, each host's URLs one after
another (crawl.fetch.fetcher.fetch_host). It does not wait for a whole batch of hosts to finish before taking the next:
each process() call submits one host group and hands on whatever finished meanwhile, so one slow host delays
nothing but itself; finish_bundle() waits for the rest. Host groups are never held back: while the bundle's
thread is busy downstream (extraction runs in the same fused stage), the fetch threads go on with the next hosts,
and what bounds them is the queue of finished pages (`READY_PAGES`), so fetch and extraction overlap with a
bounded number of page bodies in memory. A free fetch thread takes the largest host group waiting (a host's
URLs go one after another, so the biggest hosts decide when the crawl ends: they should start first). Counters (namespace "webtext"): fetch.in, fetch.out,
fetch.drop.<reason>, so that in == out + sum(drop.*); fetch.resumed counts links replayed from an earlier run
(also counted in in/out/drop), fetch.warc_unreadable those whose WARC record was lost and which are fetched again.

With `warc_dir` set, every decision is logged there (crawl/fetch/warc.py) and a rerun of the same job first joins its
links with those outcomes: links already decided are replayed from disk (pages read back from the WARC records,
drops from the outcome log) and only the rest is fetched, plus the outcomes listed in `resume_retry` (e.g.
timeouts) for a second chance.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import math
import pickle
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from core.gather import GatherBytes, framed, records
from core.progress import stage_bar, workers_of

from crawl.fetch.config import FetchConfig
from crawl.fetch.fetcher import DEFERRED, FetchResult, Pacer, fetch_host, fetch_pending, make_session
from crawl.fetch.procs import FetchProcs
from crawl.links import LinkRules, host_of
from core.records import DROPPED, FETCH, Link, Step, doc_id_for
from crawl.fetch.robots import RobotsCache
from crawl.fetch.safety import Resolver
from crawl.fetch.warc import Captured, WarcSink, load_page, outcome_lines, parse_outcomes, preference
from crawl.fetch.warc_recover import recover_leftovers

_HOST_DONE = object()
READY_PAGES = 256     # fetched results waiting for the bundle's thread; a full queue pauses the fetch threads


def host_key(link: Link, giants: dict, per_key: int) -> Tuple[str, Link]:
    """(host key, link). A host with more than `per_key` links is spread over ceil(n/per_key) keys by a stable
    hash of the URL, so reruns and runners agree on which key fetches which URL."""
    n_keys = max(1, math.ceil(giants.get(link.host, 0) / per_key))
    k = int(doc_id_for(link.url), 16) % n_keys
    return f"{link.host}#{k}/{n_keys}", link


def packed_link(kv: Tuple[str, Link]) -> Tuple[str, bytes]:
    """(host key, link) -> (host key, the link's fields as one framed pickle): the host groups wait in the local
    runner for the whole fetch, gathered into compressed chunks (core/gather.py), ~0.1 KB a link instead of ~1 KB
    of decoded objects (10.5 MB for 10^4 links)."""
    key, link = kv
    return key, framed(pickle.dumps(tuple(link), protocol=5))


def unpacked_links(chunks) -> list:
    return [Link(*pickle.loads(record)) for record in records(chunks)]


def _n_keys(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def key_share(key: str, n_links: int, giants: dict) -> float:
    """How many times the host's delay this key waits between its own requests: the host's URL count over the
    key's. The keys' rates then add up to one request per delay for the host, and every key, whatever its size
    (the hash split is uneven), takes about host URLs x delay, so none is a straggler. 1 for an unsplit host."""
    if _n_keys(key) == 1 or n_links == 0:
        return 1.0
    return max(1.0, giants.get(key.rsplit("#", 1)[0], n_links) / n_links)


class _FetchStep(Step):
    """Counts on the DoFn's own thread only: Beam metrics live in the thread that runs the DoFn, increments from
    the pool's threads would be lost. A FetchResult becomes its page, or a Drop named by its outcome."""
    stage = FETCH

    def outcome(self, link: Link, result: FetchResult):
        return result.page if result.outcome == "ok" else self.drop(result.outcome, link.url, result.detail)


class _FetchHosts(_FetchStep):
    """Round 0: (host key, chunks of packed links). Round r > 0: (host, Pending redirect chains that arrived at
    that host); those links were counted in round 0 already. A chain that leaves for yet another host goes to the
    "deferred" output, keyed by that host, for the next round; the last round follows every hop itself."""

    def __init__(self, cfg: FetchConfig, rules: LinkRules, quiet: bool, round_: int = 0, workers: int | None = 1):
        super().__init__()
        self.cfg, self.rules, self.quiet, self.round, self.workers = cfg, rules, quiet, round_, workers

    def setup(self):
        cfg = self.cfg
        self.interrupted = False           # some host was left unfinished (its bundle failed)
        self.bar = None                 # made at the first host group: idle workers show no bar
        self.procs = None
        if cfg.processes > 0:   # the fetch in child processes (crawl/fetch/procs.py): off this process's GIL
            self.procs = FetchProcs(cfg, self.rules, cfg.processes, cfg.global_concurrency // cfg.processes,
                                    done=_HOST_DONE)
            self.stopped = self.procs.stopped   # set by its stop(): results are no longer queued
            return
        self.session = make_session(cfg)
        self.pacer, self.resolver = Pacer(cfg.per_host_concurrency), Resolver(timeout=cfg.dns_timeout)
        self.robots = RobotsCache(cfg.user_agent) if cfg.robots else None
        self.pool = ThreadPoolExecutor(cfg.global_concurrency, thread_name_prefix="fetch")
        self.stopped = threading.Event()   # set by teardown: host threads stop before their next request

    def start_bundle(self):
        self.done, self.inflight = queue.Queue(READY_PAGES), 0
        self.waiting, self.waiting_lock, self.arrived = [], threading.Lock(), itertools.count()
        self.sink = (WarcSink(self.cfg.warc_dir, self.cfg.warc_rotate, commit_seconds=self.cfg.warc_commit_seconds)
                     if self.cfg.warc_dir else None)

    def _run_largest(self, done, sink):
        """One pool task per submitted group; each runs whichever waiting group is largest now."""
        with self.waiting_lock:
            _, _, key, items, share = heapq.heappop(self.waiting)
        self._run_host(key, items, share, done, sink)

    def _run_host(self, key, items, share, done, sink):
        defer = self.round < self.cfg.redirect_rounds
        try:
            if self.round == 0:
                results = fetch_host(items, self.cfg, self.rules, self.session, n_keys=share, pacer=self.pacer,
                                     resolver=self.resolver, robots=self.robots, pace_key=key, defer=defer)
            else:
                results = fetch_pending(items, self.cfg, self.rules, self.session, pacer=self.pacer,
                                        resolver=self.resolver, robots=self.robots, defer=defer)
            for link, result in results:
                if self.stopped.is_set():   # the bundle failed and this instance is discarded: see teardown
                    self.interrupted = True
                    return
                if sink is not None and result.outcome != DEFERRED:     # only final outcomes are logged
                    sink.add(link, result)
                self._put(done, (link, result))
        except BaseException as e:      # the WARC disk failed, or a bug: fail the bundle, Beam retries it
            self._put(done, e)
        finally:
            self._put(done, _HOST_DONE)

    def _deliver(self, done, sink, item) -> None:
        """A fetch process's result (on FetchProcs' reader thread): logged to the WARC sink, then queued."""
        if sink is not None and isinstance(item, tuple) and item[1].outcome != DEFERRED:
            try:
                sink.add(*item)
            except BaseException as e:   # the WARC disk failed: fail the bundle, as the threads do
                item = e
        self._put(done, item)

    def _put(self, done, item) -> None:
        """Wait for room in the ready queue, but not past teardown (then nobody drains it any more)."""
        while not self.stopped.is_set():
            try:
                done.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _drain(self, wait_for_host: bool):
        """Finished (link, result) pairs; with wait_for_host, block until at least one host group is done."""
        while True:
            try:
                item = self.done.get(block=wait_for_host)
            except queue.Empty:
                return
            if item is _HOST_DONE:
                self.inflight -= 1
                wait_for_host = False
            elif isinstance(item, BaseException):
                raise item
            elif item[1].outcome == DEFERRED:      # not counted: the link ends in a later round
                pending = item[1].pending
                yield beam.pvalue.TaggedOutput("deferred", (host_of(pending.url), pending))
            else:
                self.bar.update(1)
                yield from self.emit(self.outcome(*item))

    def process(self, kv, giants, total=None):
        key, links = kv
        links = unpacked_links(links) if self.round == 0 else list(links)   # round 0: gathered (packed_link)
        if self.bar is None:
            self.bar = stage_bar(f"fetch, redirects {self.round}" if self.round else "fetch", total, self.workers,
                                 unit="url", quiet=self.quiet)
        if self.round == 0:
            self.count("in", len(links))
        self.inflight += 1   # queued behind the running hosts; the ready queue, not this count, is the backpressure
        share = key_share(key, len(links), giants) if self.round == 0 else 1.0
        if self.procs is not None:
            defer = self.round < self.cfg.redirect_rounds
            self.procs.submit(key, links, links if self.round == 0 else [p.link for p in links], share, self.round,
                              defer, functools.partial(self._deliver, self.done, self.sink))
            yield from self._drain(wait_for_host=False)
            return
        with self.waiting_lock:
            heapq.heappush(self.waiting, (-len(links), next(self.arrived), key, links, share))
        self.pool.submit(self._run_largest, self.done, self.sink)
        yield from self._drain(wait_for_host=False)

    def finish_bundle(self):
        while self.inflight > 0:
            yield from self.windowed(self._drain(wait_for_host=True))
        if self.sink is not None:
            self.sink.close()

    def teardown(self):
        # A runner discards the instance of a failed bundle (teardown) and retries the bundle elsewhere, with a
        # fresh Pacer. Host threads still running here would go on fetching those hosts beside the retry, and
        # politeness would be broken. So they stop before their next request, and teardown waits for the one in
        # flight (bounded by the per-page wall-clock cap) so that none overlaps the retry, then the delay, which
        # the retry's Pacer cannot know about.
        if self.procs is not None:
            cfg = self.cfg
            self.interrupted = self.procs.stop(wait=cfg.page_timeout + cfg.robots_timeout + 5)
        else:
            self.stopped.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.interrupted:
            time.sleep(self.cfg.min_delay)
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------------ resume
class _SplitResumed(beam.DoFn):
    """Links with a prior outcome go to replay, unless that outcome is one the config wants fetched again."""

    def __init__(self, retry: Tuple[str, ...]):
        self.retry = frozenset(retry)

    def process(self, kv):
        _, grouped = kv
        prior = min(grouped["prior"], key=preference, default=None)
        for link in grouped["link"]:
            if prior is not None and prior.outcome not in self.retry:
                yield beam.pvalue.TaggedOutput("resumed", (link, prior))
            else:
                yield link


class _Replay(_FetchStep):
    """Links decided by an earlier run: the page from its WARC record, or the recorded drop. No network."""

    def __init__(self, warc_dir: str):
        super().__init__()
        self.warc_dir = warc_dir

    def process(self, item: Tuple[Link, Captured]):
        link, rec = item
        if rec.outcome == "ok":
            try:
                page = load_page(self.warc_dir, rec, link)
            except Exception:           # a lost or damaged WARC file: fetch the link again
                self.count("warc_unreadable")
                yield beam.pvalue.TaggedOutput("refetch", link)
                return
            result = FetchResult("ok", page)
        else:
            result = FetchResult(rec.outcome, detail=rec.detail)
        self.count("in")
        self.count("resumed")
        yield from self.emit(self.outcome(link, result))


def _say_resuming(n_links: int, resumed: int, warc_dir: str) -> None:
    if resumed:
        print(f"resuming: {resumed:,} of {n_links:,} links already fetched (outcomes in {warc_dir}); "
              f"{n_links - resumed:,} to fetch", file=sys.stderr, flush=True)


def _read_outcomes(readable_file):
    with readable_file.open(compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for rec in parse_outcomes(line for _, line in outcome_lines(f)):   # bounded lines; bad ones skipped
            yield rec.url, rec


class FetchPages(beam.PTransform):
    """Links -> {"pages": PCollection[Page], "dropped": PCollection[Drop]} (tagged like HarvestLinks)."""

    def __init__(self, cfg: FetchConfig = FetchConfig(), rules: LinkRules = LinkRules(), quiet: bool = False):
        super().__init__()
        self.cfg, self.rules, self.quiet = cfg, rules, quiet

    def expand(self, links):
        cfg = self.cfg
        todo, replayed = links, None
        if cfg.warc_dir:
            recover_leftovers(cfg.warc_dir)     # a killed run's temp files: whole records committed, the rest removed
            prior = (links.pipeline
                     | "MatchOutcomes" >> fileio.MatchFiles(FileSystems.join(cfg.warc_dir, "outcomes-*.jsonl"),
                                                            empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
                     | "ReadOutcomes" >> fileio.ReadMatches()
                     | "ParseOutcomes" >> beam.FlatMap(_read_outcomes))
            split = ({"link": links | "ByURL" >> beam.Map(lambda l: (l.url, l)), "prior": prior}
                     | "JoinPrior" >> beam.CoGroupByKey()
                     | "SplitResumed" >> beam.ParDo(_SplitResumed(cfg.resume_retry)).with_outputs(
                         "resumed", main="todo"))
            replayed = split.resumed | "Replay" >> beam.ParDo(_Replay(cfg.warc_dir)).with_outputs(
                DROPPED, "refetch", main="pages")
            todo = (split.todo, replayed.refetch) | "ToFetch" >> beam.Flatten()
            if not self.quiet:   # counts of links, not pages: nothing waits for these but the line itself
                _ = (links | "CountLinks" >> beam.combiners.Count.Globally()
                     | "SayResuming" >> beam.Map(_say_resuming, beam.pvalue.AsSingleton(
                         split.resumed | "CountResumed" >> beam.combiners.Count.Globally()), cfg.warc_dir))
        workers = workers_of(links.pipeline.options)
        # The fetch's total, known once the links are: the GroupByKey below waits for all of them anyway.
        total = todo | "CountToFetch" >> beam.combiners.Count.Globally()
        per_key = cfg.max_urls_per_host_key
        giants = (todo
                  | "Host" >> beam.Map(lambda l: l.host)
                  | "CountPerHost" >> beam.combiners.Count.PerElement()
                  | "GiantHosts" >> beam.Filter(lambda kv: kv[1] > per_key))
        fetched = (todo
                   | "HostKey" >> beam.Map(host_key, giants=beam.pvalue.AsDict(giants), per_key=per_key)
                   | "Packed" >> beam.Map(packed_link)
                   | "GroupByHost" >> GatherBytes()
                   | "FetchHosts" >> beam.ParDo(_FetchHosts(cfg, self.rules, self.quiet, workers=workers),
                                                giants=beam.pvalue.AsDict(giants),
                                                total=beam.pvalue.AsSingleton(total)).with_outputs(
                       DROPPED, "deferred", main="pages"))
        pages, dropped, deferred = [fetched.pages], [fetched[DROPPED]], fetched.deferred
        # A redirect to another host is fetched under that host's key in the next round, so the target host's
        # pacing holds across workers too (a shortener's keys would otherwise hit it from several at once).
        for r in range(1, cfg.redirect_rounds + 1):
            step = (deferred
                    | f"GroupRedirects{r}" >> beam.GroupByKey()
                    | f"FetchRedirects{r}" >> beam.ParDo(_FetchHosts(cfg, self.rules, self.quiet, r, workers),
                                                         giants=beam.pvalue.AsDict(giants)).with_outputs(
                        DROPPED, "deferred", main="pages"))
            pages.append(step.pages)
            dropped.append(step[DROPPED])
            deferred = step.deferred      # empty after the last round, which follows every hop itself
        if replayed is not None:
            pages.append(replayed.pages)
            dropped.append(replayed[DROPPED])
        # One source of pages stays fused with the extraction that follows; a Flatten of several stages' outputs
        # makes the local runner hold every page until the fetch has ended (docs/scaling.md).
        return {"pages": pages[0] if len(pages) == 1 else tuple(pages) | "FlattenPages" >> beam.Flatten(),
                DROPPED: tuple(dropped) | "FlattenDrops" >> beam.Flatten()}
