"""The extraction process pool: pages in batches to worker processes, each page under a wall-clock alarm and each
worker under a memory cap.

Extraction is most of the CPU cost of the whole pipeline and can run unbounded on pathological HTML. The pool uses
every core a Beam worker has; each page runs under SIGALRM (`extract.timeout`); a worker stuck where the alarm
cannot reach it (inside C code) is killed from outside after a grace period and the pool is replaced. Each worker
caps its own address space (RLIMIT_AS, `extract.max_worker_memory_mb` above its start-up size): a page that needs
more ends as `extract_memory` (MemoryError) or, if the allocation failure kills the worker, `extract_crashed`.
When a worker dies, only the page it was on is dropped: every worker writes the id of the task it runs into a
shared array, so after the break the pages that had not started go back to a fresh pool and the few that were
running (the culprit and its neighbours) are retried one at a time; the one that kills its worker alone is the
culprit. Nothing a worker does fails the bundle: every outcome is a Document or a (reason, detail).
A Beam worker process runs many DoFn instances at once (Prism, Flink and Spark run bundles in parallel threads):
they all lease one pool per process (`shared_pool`), started by the first, closed when the last lets go, and
their batches take turns on it, so a process never runs more extraction workers than it has cores.
This module is also what the workers import first: a handler goes on the root logger before Beam is imported
there (Beam logs a warning about optional GCP clients at import time, once per worker otherwise).
"""
import logging

logging.getLogger().addHandler(logging.NullHandler())

import concurrent.futures as cf  # noqa: E402
import itertools  # noqa: E402
import pickle  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
from typing import Dict, List  # noqa: E402

from core import forkserver  # noqa: E402
from core.records import Document, Page  # noqa: E402
from crawl.links import LinkRules  # noqa: E402
from crawl.text.extract import ExtractConfig, ExtractTimeout, document_from_page, extract_text, identify_language  # noqa: E402

IDLE = -1


# ------------------------------------------------------------------------------ worker side (in the processes)
_ARMED = False          # the alarm raises only while a page is on the clock
_SLOTS = None           # shared array: [next free slot, task id running in slot 0, slot 1, ...]
_SLOT = 0


def _on_alarm(signum, frame):
    if _ARMED:
        raise ExtractTimeout()


def _memory_error(result) -> bool:
    # document_from_page turns any Exception from trafilatura into extract_error; a MemoryError there is the cap.
    return isinstance(result, tuple) and result[0] == "extract_error" and result[1].startswith("MemoryError")


def document_with_alarm(page: Page, cfg: ExtractConfig, rules: LinkRules, then=None):
    """Runs in the worker's main thread, where SIGALRM can interrupt a runaway extraction. The alarm raises only
    while armed, and disarming starts by clearing the flag, so an alarm that fires as the page finishes either
    lands inside the try below (and the page keeps the result it already has) or does nothing. `then` (the
    per-document work after extraction, see ExtractPool) runs on the same clock."""
    global _ARMED
    result = None
    try:
        signal.signal(signal.SIGALRM, _on_alarm)
        _ARMED = True
        signal.setitimer(signal.ITIMER_REAL, cfg.timeout)
        try:
            result = document_from_page(page, cfg, rules)
            if then is not None and isinstance(result, Document):
                # cleared first: an alarm inside `then` must end the page as a timeout, not let the unfinished
                # Document (whose quality rules never ran) through
                doc, result = result, None
                result = then(doc)
        finally:
            _ARMED = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except ExtractTimeout:   # fired outside trafilatura (e.g. during language ID), or as it finished
        if result is None:
            return "extract_timeout", f"> {cfg.timeout} s"
    except MemoryError:      # over the worker's cap outside trafilatura's own catch
        result = "extract_error", "MemoryError"
    if _memory_error(result):
        return "extract_memory", f"over the worker memory cap ({cfg.max_worker_memory_mb} MiB)"
    return result


def warm_up(cfg: ExtractConfig) -> None:
    """First-use costs (lxml/trafilatura caches, the language model) paid once per worker, off the clock."""
    extract_text("<html><body><article><p>warm up</p></article></body></html>")
    if cfg.language:
        identify_language("warm up", identifier=cfg.language_identifier)


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _init_worker(cfg: ExtractConfig, slots, then=None) -> None:
    """Once per worker: take a slot, warm up, then cap the address space at what start-up left plus the budget."""
    global _SLOTS, _SLOT
    # Ctrl-C reaches every process of the terminal's group: the parent handles it (webtext.py) and ends these.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = slots.get_lock()
    if not lock.acquire(timeout=30):     # the holder died inside two lines: a worker without a slot is still fine
        raise RuntimeError("slot lock not released")
    try:
        _SLOT = int(slots[0])
        slots[0] += 1
    finally:
        lock.release()
    _SLOTS = slots.get_obj()             # writes of one's own slot need no lock (a killed holder would wedge all)
    _SLOTS[1 + _SLOT] = IDLE
    warm_up(cfg)
    if hasattr(then, "warm_up"):
        then.warm_up()                   # e.g. the tokenizer's vocabulary, loaded before the cap is set
    if cfg.max_worker_memory_mb:
        cap = _address_space() + cfg.max_worker_memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _ready() -> bool:
    return True


def _task(task_id: int, page: Page, cfg: ExtractConfig, rules: LinkRules, then):
    _SLOTS[1 + _SLOT] = task_id          # left in place if this page kills the worker: that names the culprit
    result = document_with_alarm(page, cfg, rules, then)
    _SLOTS[1 + _SLOT] = IDLE
    return result


def _chunk(task_ids: List[int], pages: List[Page], cfg: ExtractConfig, rules: LinkRules, then) -> list:
    """A few pages in a row, each its own task (own slot id, own alarm, own drop when it raises)."""
    results = []
    for task_id, page in zip(task_ids, pages):
        try:
            results.append(_task(task_id, page, cfg, rules, then))
        except Exception as e:           # a bug below document_with_alarm: this page's drop, not its neighbours'
            _SLOTS[1 + _SLOT] = IDLE
            results.append(("extract_error", f"{type(e).__name__}: {e}"))
    return results


def chunk_size(pages: int, processes: int) -> int:
    """Pages per task: one message each way per chunk instead of per page (the executor's per-task hand-offs cost
    the Beam worker ~0.3 ms of CPU per page, as much as the rest of its work on a page); small enough that a
    batch still spreads over every worker with little waiting at its end (~8 chunks per worker)."""
    return max(1, min(8, pages // (8 * processes)))


# ------------------------------------------------------------------------------ parent side
def _chunk_of(tasks: Dict[int, tuple], future) -> Dict[int, int]:
    """{task id: page index} of the pages that went to the workers in `future`'s chunk (ExtractPool._submit)."""
    return {t: j for j, (t, f, _, _) in tasks.items() if f is future}


def _pool_context(preload=()):
    # forkserver (core/forkserver.py): workers fork from a clean server that imported trafilatura once.
    # `preload`: the module of the per-document work (`then`), else each worker imports it on its first task
    # (~1 s of imports per worker). The list counts where the forkserver starts: once per process.
    return forkserver.context(*preload)


forkserver.preload("crawl.text.pool", "trafilatura", "pycld2")


CRASHED = ("extract_crashed", "its extraction worker died on this page (killed, crashed or out of memory)")


class ExtractPool:
    """Extracts batches of pages on `processes` worker processes, each page under cfg.timeout; `rules` says which
    hosts are Wikipedia (the same rules as the link stage). `then` (picklable, optional) is applied in the worker
    to every Document extracted: whatever it returns (a Document, a Drop) is the page's result."""

    GRACE = 10.0   # seconds past the alarm before a worker counts as wedged and the pool is replaced

    def __init__(self, cfg: ExtractConfig, processes: int, rules: LinkRules = LinkRules(), then=None):
        self.cfg, self.rules, self.processes, self.then = cfg, rules, max(1, processes), then
        self._pool, self._slots, self._starting = None, None, None
        self._ids = itertools.count()
        # _life guards starting and closing; _turn lets one batch at a time use the workers: the per-result
        # wait below (timeout + GRACE) assumes the futures ahead of a page are its own batch's, and a replaced
        # pool must not break another batch's futures. A turn ends within its own bounded waits.
        self._life, self._turn = threading.RLock(), threading.Lock()
        self.restarts = 0          # pools replaced after a dead or wedged worker (for tests and logs)

    def start_in_background(self) -> None:
        """Start the workers while earlier work (the fetch) is still running: starting costs about a second.
        A failure here is left for map(), which starts again and raises with the explanation."""
        with self._life:
            if self.cfg.timeout and self._pool is None and self._starting is None:
                def start():
                    try:
                        self._start()
                    except RuntimeError:
                        pass
                self._starting = threading.Thread(target=start, daemon=True)
                self._starting.start()

    def _start(self) -> None:
        ctx = _pool_context([type(self.then).__module__] if self.then is not None else [])
        slots = ctx.Array("q", [0] + [IDLE] * self.processes)
        pool = cf.ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_init_worker,
                                      initargs=(self.cfg, slots, self.then))
        ready = [pool.submit(_ready) for _ in range(self.processes)]
        try:
            cf.wait(ready, timeout=120)
            ok = all(f.done() and not f.exception() for f in ready)
        except cf.process.BrokenProcessPool:
            ok = False
        if not ok:
            pool.shutdown(wait=False, cancel_futures=True)
            raise RuntimeError(
                "extraction workers could not start; if you call webtext from your own script, put the call "
                "under `if __name__ == \"__main__\":` (worker processes import your main module)")
        self._pool, self._slots = pool, slots

    def _ensure_started(self) -> None:
        with self._life:
            if self._starting is not None:
                self._starting.join()    # bounded: _start waits at most 120 s for its workers
                self._starting = None
            if self._pool is None:
                self._start()

    def map(self, pages: List[Page]) -> list:
        """One Document or (reason, detail) per page, in order (with `then`: what it returned instead of the Document)."""
        with self._turn:
            return self._map(pages)

    def _map(self, pages: List[Page]) -> list:
        if not self.cfg.timeout:   # no bound asked for: extract here, no workers
            results = [document_from_page(p, self.cfg, self.rules) for p in pages]
            return [self.then(r) if self.then is not None and isinstance(r, Document) else r for r in results]
        results: list = [None] * len(pages)
        todo, alone = list(range(len(pages))), False
        while todo:
            if alone:                  # a break nobody could be blamed for: one page at a time, exactly
                for i in todo:
                    self._round(pages, [i], results, crashed=CRASHED)
                break
            suspects, todo = self._round(pages, todo, results)
            for i in suspects:         # running when a worker died: alone, the culprit dies again
                self._round(pages, [i], results, crashed=CRASHED)
            alone = bool(todo) and not suspects
        return results

    def _submit(self, pages, todo) -> Dict[int, tuple]:
        """{page index: (task id, future of its chunk, its place in the chunk, the chunk's size)}, in `todo` order"""
        size = chunk_size(len(todo), self.processes)

        def submit_all():
            tasks = {}
            for start in range(0, len(todo), size):
                part = todo[start:start + size]
                ids = [next(self._ids) for _ in part]
                future = self._pool.submit(_chunk, ids, [pages[i] for i in part], self.cfg, self.rules, self.then)
                tasks.update({i: (t, future, k, len(part)) for k, (i, t) in enumerate(zip(part, ids))})
            return tasks
        self._ensure_started()
        try:
            return submit_all()
        except cf.process.BrokenProcessPool:   # the pool broke between batches: one fresh start, no loop
            self._replace()
            return submit_all()

    def _round(self, pages, todo, results, crashed=None):
        """Run pages `todo` in parallel into `results`. After a worker died: (pages that were running, pages that
        had not started or were interrupted); with `crashed` (a single page), that page gets `crashed` instead."""
        tasks = self._submit(pages, todo)
        for i, (task_id, future, k, n) in tasks.items():
            try:
                # Chunks finish roughly in order, so waiting timeout+grace per page of a chunk, counted from its
                # first page (the rest are then done), bounds a wedged worker.
                results[i] = future.result(timeout=(self.cfg.timeout * n + self.GRACE) if k == 0 else 0)[k]
                continue
            except cf.TimeoutError:     # wedged where the alarm cannot reach: the page its slot names is out of time
                chunk = _chunk_of(tasks, future)
                stuck = [chunk[t] for t in map(int, self._slots.get_obj()[1:]) if t in chunk] or [i]
                for j in stuck:
                    results[j] = ("extract_timeout", f"worker killed after {self.cfg.timeout + self.GRACE} s")
                running = set()
            except cf.process.BrokenProcessPool:   # a worker died; its slot still names the task it was on
                running = {int(t) for t in self._slots.get_obj()[1:]}
            except (Exception, ExtractTimeout) as e:   # the chunk's result could not come back: its pages' drop
                for j in _chunk_of(tasks, future).values():
                    results[j] = ("extract_error", f"{type(e).__name__}: {e}")
                continue
            self._replace()
            suspects, rest = [], []
            for j, (task_id, f, place, _) in tasks.items():
                if results[j] is not None:
                    continue
                if f.done() and not f.cancelled() and f.exception() is None:
                    results[j] = f.result()[place]      # its chunk finished before the break
                elif crashed is not None:
                    results[j] = crashed
                else:
                    (suspects if task_id in running else rest).append(j)
            return suspects, rest
        return [], []

    def _replace(self) -> None:
        self.close()
        self.restarts += 1

    def close(self):
        with self._life:
            if self._starting is not None:
                self._starting.join()
                self._starting = None
            if self._pool is not None:
                for proc in list(getattr(self._pool, "_processes", {}).values()):
                    proc.terminate()   # a wedged worker would make shutdown wait forever
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._slots = None


def default_processes() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ------------------------------------------------------------------------------ one pool per process
_SHARED: Dict[bytes, list] = {}     # settings -> [ExtractPool, leases held]
_SHARED_LOCK = threading.Lock()


class PoolLease:
    """One DoFn instance's use of its process's shared ExtractPool: map/start_in_background as the pool's,
    `restarts` counts the replacements during this lease's own batches, close() gives the lease back (the last
    one closes the pool). Leases of the same settings share one pool; a pipeline has one setting per process."""

    def __init__(self, key: bytes, pool: ExtractPool):
        self._key, self._pool, self.restarts = key, pool, 0

    def start_in_background(self) -> None:
        if self._pool is not None:
            self._pool.start_in_background()

    def map(self, pages: List[Page]) -> list:
        if self._pool is None:
            raise RuntimeError("map() on a closed pool lease")
        pool = self._pool
        with pool._turn:                   # the restarts counted are this batch's own
            before = pool.restarts
            try:
                return pool._map(pages)
            finally:
                self.restarts += pool.restarts - before

    def close(self) -> None:
        with _SHARED_LOCK:
            if self._pool is None:         # closed twice (Beam may tear down after a failed setup)
                return
            entry, self._pool = _SHARED.get(self._key), None
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:   # closed under the lock: a new lease never starts a pool beside a closing one
                del _SHARED[self._key]
                entry[0].close()


def shared_pool(cfg: ExtractConfig, processes: int, rules: LinkRules = LinkRules(), then=None) -> PoolLease:
    """A lease on this process's pool for these settings, made on first use with `processes` workers but never
    more than the cores left (at least one); every later lease (another DoFn instance, another bundle thread)
    gets the same pool."""
    try:
        key = pickle.dumps((cfg, rules, then))
    except Exception:                      # settings that cannot be pickled cannot reach workers either
        key = repr((id(cfg), id(rules), id(then))).encode()
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:   # cores that pools of other settings (another pipeline in this process) leave
            free = default_processes() - sum(e[0].processes for e in _SHARED.values())
            entry = _SHARED[key] = [ExtractPool(cfg, min(max(1, processes), max(1, free)), rules, then), 0]
        entry[1] += 1
        return PoolLease(key, entry[0])
