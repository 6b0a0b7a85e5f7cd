"""Fetch processes: host groups fetched in child processes, so that the fetch's CPU (requests and urllib3, the
address and robots checks, the host threads' switching) leaves the process that runs Beam's bundles.

Why: on the local runner one process runs every bundle and every fetch thread under one GIL; it was the ceiling of
a 2-core run (docs/scaling.md, "Every core busy"). A child here does what _FetchHosts' threads did in the worker
itself: it takes the largest waiting host group first, fetches up to `threads` hosts at once, each host's URLs one
after another (crawl.fetch.fetcher.fetch_host / fetch_pending), with its own Session, Pacer, Resolver and robots
cache. A host key goes to exactly one child, so its pacing holds as before (split hosts pace per key already).

Results stream back one link at a time over a pipe, as (group, index, FetchResult); a reader thread in the parent
puts them on the bundle's ready queue, as the threads did. A full ready queue stops the reader, a full pipe stops
the child's host threads: the same bounded number of page bodies in flight as before.

Nothing is lost when a child dies (killed, out of memory, a crash in C code): the links of its groups that it had
not reported end as `fetch_error` ("its fetch process died"), counted, and the next group starts a fresh child.
Every wait is bounded: the parent's reads poll with a timeout and check the children; stop() asks the children to
stop before their next request, waits for the ones in flight (each bounded by the page's wall-clock cap), then
kills what is left. A child exits by itself when the parent's end of its task pipe closes.
"""
from __future__ import annotations

import heapq
import itertools
import multiprocessing.connection as mpc
import os
import signal
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from core import forkserver, linux
from crawl.fetch.config import FetchConfig
from crawl.links import LinkRules

forkserver.preload("crawl.fetch.procs", "crawl.fetch.fetcher")   # the child's imports, paid once in the server

DIED = "its fetch process died before this link was done (killed, out of memory or crashed)"


# ------------------------------------------------------------------------------------- child side
def _child(cfg: FetchConfig, rules: LinkRules, tasks, results, threads: int) -> None:
    """A fetch process: groups arrive on `tasks`, (group, index, result) and (group, None, None) when a group is
    done go back on `results`. "stop": stop before the next request and exit; EOF (the parent is gone): the same."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle; it stops this child
    linux.name_process(b"webtext-fetch")
    linux.die_with_parent()           # the forkserver, which ends with the run
    from crawl.fetch.fetcher import fetch_host, fetch_pending, make_session
    from crawl.fetch.http import Pacer
    from crawl.fetch.robots import RobotsCache
    from crawl.fetch.safety import Resolver

    session = make_session(cfg)
    pacer, resolver = Pacer(cfg.per_host_concurrency), Resolver(timeout=cfg.dns_timeout)
    robots = RobotsCache(cfg.user_agent) if cfg.robots else None
    stopped, send_lock = threading.Event(), threading.Lock()
    waiting, waiting_lock, arrived = [], threading.Lock(), itertools.count()

    def send(msg) -> bool:
        with send_lock:
            if stopped.is_set():
                return False
            try:
                results.send(msg)    # blocks while the pipe is full: the parent's ready queue is the backpressure
                return True
            except (OSError, EOFError):
                stopped.set()
                return False

    def run_largest():
        with waiting_lock:
            _, _, gid, round_, items, share, key, defer = heapq.heappop(waiting)
        try:
            if round_ == 0:     # Links
                pairs = fetch_host(items, cfg, rules, session, n_keys=share, pacer=pacer, resolver=resolver,
                                   robots=robots, pace_key=key, defer=defer)
                index = {id(link): i for i, link in enumerate(items)}
            else:               # redirect chains: each reports under its chain's link
                pairs = fetch_pending(items, cfg, rules, session, pacer=pacer, resolver=resolver, robots=robots,
                                      defer=defer)
                index = {id(p.link): i for i, p in enumerate(items)}
            for link, result in pairs:   # in the fetch's own order (sorted by URL)
                if stopped.is_set() or not send((gid, index[id(link)], result)):
                    return
            send((gid, None, None))
        except BaseException as e:   # a bug (fetch_one itself never raises): the parent fails the bundle
            send((gid, "error", f"{type(e).__name__}: {e}"[:500]))

    pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
    orphaned = False
    try:
        while True:
            try:
                task = tasks.recv()
            except (EOFError, OSError):   # the parent is gone (Ctrl-C, a kill): nobody reads what is in flight
                orphaned = True
                break
            if task == "stop":
                break
            gid, round_, key, items, share, defer = task
            with waiting_lock:
                heapq.heappush(waiting, (-len(items), next(arrived), gid, round_, items, share, key, defer))
            pool.submit(run_largest)
    finally:
        stopped.set()                 # host threads stop before their next request
        # asked to stop: the requests in flight end first (the parent waits for that, bounded, so that none
        # overlaps a retried bundle's); orphaned: now
        pool.shutdown(wait=not orphaned, cancel_futures=True)
        os._exit(0)                   # no atexit work: the parent owns every file


# ------------------------------------------------------------------------------------- parent side
class _Child:
    def __init__(self, ctx, cfg: FetchConfig, rules: LinkRules, threads: int):
        task_r, self.tasks = ctx.Pipe(duplex=False)
        self.results, result_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(cfg, rules, task_r, result_w, threads), daemon=True,
                                name="webtext-fetch")
        self.proc.start()
        task_r.close()
        result_w.close()
        self.groups: Dict[int, int] = {}   # group id -> links not reported yet (for choosing the least loaded)
        self.dead = False


class _Group:
    __slots__ = ("links", "reported", "deliver", "child")

    def __init__(self, links, deliver, child):
        self.links, self.reported, self.deliver, self.child = links, set(), deliver, child


class FetchProcs:
    """`processes` fetch children of `threads` host threads each. submit() hands a host group to the least loaded
    child; `deliver(item)` (given per group) receives (link, FetchResult) per link, then `done` once the group is
    over, or an exception to fail the bundle with. Thread-safe: submit runs on the bundle's thread, deliveries
    on this object's reader thread."""

    POLL = 0.5
    DRAIN = 64    # messages read from one child per wait: a wait (a poll object over every pipe) per page cost more

    def __init__(self, cfg: FetchConfig, rules: LinkRules, processes: int, threads: int, done: object):
        self.cfg, self.rules, self.done = cfg, rules, done
        self.processes, self.threads = max(1, processes), max(1, threads)
        self.ctx = forkserver.context()    # forked from a clean server (core/forkserver.py), not from Beam's threads
        self.children: List[_Child] = []
        self.groups: Dict[int, _Group] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count()
        self.stopped = threading.Event()
        self.reader: Optional[threading.Thread] = None
        weakref.finalize(self, FetchProcs._kill, self.children)

    # -- submitting
    def submit(self, key: str, items: list, links: list, share: float, round_: int, defer: bool,
               deliver: Callable[[object], None]) -> None:
        """items: Links (round 0) or Pending chains; links: the Link each item reports under."""
        with self.lock:
            self.children = [c for c in self.children if not c.dead]
            if len(self.children) < self.processes:
                self.children.append(_Child(self.ctx, self.cfg, self.rules, self.threads))
            child = min(self.children, key=lambda c: sum(c.groups.values()))
            gid = next(self.ids)
            self.groups[gid] = _Group(links, deliver, child)
            child.groups[gid] = len(items)
            if self.reader is None:
                self.reader = threading.Thread(target=self._read, name="fetch-results", daemon=True)
                self.reader.start()
        try:
            child.tasks.send((gid, round_, key, items, share, defer))
        except (OSError, ValueError):      # the child is gone: the reader ends its groups
            with self.lock:
                child.dead = child.dead or not child.proc.is_alive()

    # -- reading
    def _read(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                live = [c for c in self.children if not c.dead]
            if not live:
                time.sleep(0.05)
                continue
            ready = mpc.wait([c.results for c in live] + [c.proc.sentinel for c in live], timeout=self.POLL)
            for child in live:
                if child.results in ready:
                    try:
                        for _ in range(self.DRAIN):   # what is already there, without another wait each
                            self._handle(child.results.recv())
                            if not child.results.poll():
                                break
                    except (EOFError, OSError):
                        self._lost(child)
                elif child.proc.sentinel in ready:   # exited with nothing left in its pipe
                    self._lost(child)

    def _handle(self, msg) -> None:
        gid, index, result = msg
        with self.lock:
            group = self.groups.get(gid)
        if group is None:
            return
        if index == "error":
            self._finish(gid, group, RuntimeError(f"fetch process: {result}"))
        elif index is None:
            self._finish(gid, group, None)
        else:
            group.reported.add(index)
            group.child.groups[gid] = len(group.links) - len(group.reported)
            group.deliver((group.links[index], result))

    def _finish(self, gid: int, group: _Group, error) -> None:
        with self.lock:
            self.groups.pop(gid, None)
            group.child.groups.pop(gid, None)
        if error is not None:
            group.deliver(error)
        group.deliver(self.done)

    def _lost(self, child: _Child) -> None:
        """A child died: every link it had not reported ends as fetch_error; its groups are over."""
        from crawl.fetch.fetcher import FetchResult
        with self.lock:
            if child.dead:
                return
            child.dead = True
            mine = [(gid, g) for gid, g in self.groups.items() if g.child is child]
        child.proc.join(timeout=5)
        for gid, group in mine:
            for i, link in enumerate(group.links):
                if i not in group.reported:
                    group.deliver((link, FetchResult("fetch_error", detail=DIED, network=True)))
            self._finish(gid, group, None)

    # -- stopping
    def pending(self) -> int:
        with self.lock:
            return len(self.groups)

    def stop(self, wait: float) -> bool:
        """Children stop before their next request; those still fetching after `wait` seconds are killed.
        True if some group was left unfinished."""
        self.stopped.set()
        with self.lock:
            children, unfinished = list(self.children), bool(self.groups)
        for c in children:
            try:
                c.tasks.send("stop")
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + wait
        for c in children:
            c.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        FetchProcs._kill(children)
        if self.reader is not None:
            self.reader.join(timeout=self.POLL * 4)
        return unfinished

    @staticmethod
    def _kill(children: List[_Child]) -> None:
        for c in children:
            if c.proc.is_alive():
                c.proc.kill()
                c.proc.join(timeout=5)
            for conn in (c.tasks, c.results):
                conn.close()


def default_fetch_processes(cores: int) -> int:
    """On a local runner with several cores, one fetch process takes the fetch off the bundles' GIL; with one
    core a child would only add the pipe's cost."""
    return 1 if cores >= 2 else 0

