"""The extraction pool under pages that kill their worker, exhaust its memory cap, or finish as the alarm fires.

Everything runs through the real pool (forkserver workers, SIGALRM, RLIMIT_AS); the kill comes from an
OOM-killer stand-in that watches the workers' resident memory from outside and SIGKILLs the one that balloons.
"""
import os
import signal
import sys
import threading

import pytest

from core.records import Document, Link, Page
from crawl.text import pool as pool_module
from crawl.links import LinkRules
from crawl.text.extract import ExtractConfig
from crawl.text.pool import ExtractPool, document_with_alarm

WORDS = ("the river archive holds letters maps and ledgers from the old harbour town where merchants wrote "
         "about weather prices ships and the long winter of that year").split()


def article(i: int) -> bytes:
    sentences = " ".join(f"{' '.join(WORDS[(i + k) % 7:(i + k) % 7 + 12]).capitalize()} number {i}-{k}."
                         for k in range(20))
    return f"<html><body><article><h1>Story {i}</h1><p>{sentences}</p></article></body></html>".encode()


def balloon(kib: int = 1024) -> bytes:
    # Flat unclosed paragraphs: lxml + trafilatura need ~300 MiB and ~20 s for 1 MiB of this.
    return b"<html><body>" + b"<p>a" * (kib * 256) + b"</body></html>"


def page(body: bytes, i: int) -> Page:
    url = f"http://example.com/{i}"
    return Page(Link(url, "example.com", 5, ("s",), 1_400_000_000, 1), url, 200, "text/html", body, "utf-8")


def _descendants(pid: int) -> set:
    children, found = {}, set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


class OomKiller(threading.Thread):
    """SIGKILLs any descendant process whose RSS grows more than `limit_mib` above what it first had."""

    def __init__(self, limit_mib: float):
        super().__init__(daemon=True)
        self.limit, self.base, self.killed, self.stop = limit_mib, {}, [], threading.Event()

    def run(self):
        while not self.stop.wait(0.05):
            for pid in _descendants(os.getpid()):
                rss = _rss_mib(pid)
                base = self.base.setdefault(pid, rss)
                if rss - base > self.limit:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)


def _only_the_killer_is_dropped(pages, culprit: int) -> None:
    """Map `pages` on 2 workers with the OOM-killer stand-in watching: the balloon at `culprit` must be the only
    drop (extract_crashed), every other page a Document, in order."""
    pool = ExtractPool(ExtractConfig(timeout=60, language="", max_worker_memory_mb=0), processes=2)
    pool._ensure_started()
    killer = OomKiller(limit_mib=120)
    killer.start()
    try:
        results = pool.map(pages)
    finally:
        killer.stop.set()
        pool.close()
    assert killer.killed, "the balloon page never grew its worker"
    assert results[culprit][0] == "extract_crashed"
    assert all(isinstance(r, Document) for k, r in enumerate(results) if k != culprit), results
    assert [r.url for k, r in enumerate(results) if k != culprit] == \
        [p.link.url for k, p in enumerate(pages) if k != culprit]


def test_a_page_that_kills_its_worker_is_the_only_drop():
    pages = [page(article(i), i) for i in range(6)] + [page(balloon(), 6)] + [page(article(i), i) for i in range(7, 12)]
    _only_the_killer_is_dropped(pages, 6)


def test_a_killer_page_inside_a_chunk_is_the_only_drop():
    """Pages go to the workers in chunks (one message per few pages): a page that kills its worker mid-chunk is
    still the only drop; its chunk's pages before it (whose results died with the worker) and after it (never
    started) come out as Documents, in order."""
    from crawl.text.pool import chunk_size
    pages = [page(article(i), i) for i in range(64)]
    pages[13] = page(balloon(), 13)
    assert chunk_size(len(pages), 2) == 4     # pages 12-15 share a chunk: the balloon is its second
    _only_the_killer_is_dropped(pages, 13)


class _Wedged:
    """Per-document work that, on the page whose text mentions "Story 7", sleeps where SIGALRM cannot reach it
    (the signal blocked, as inside C code that never returns to the interpreter)."""

    def __call__(self, doc):
        if "Story 7" in doc.text:
            import time
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(600)
        return doc


def test_a_wedged_page_inside_a_chunk_is_the_only_timeout():
    from crawl.text.pool import chunk_size
    pages = [page(article(i), i) for i in range(16)]
    assert chunk_size(len(pages), 1) == 2     # the wedged page 7 is the second of its chunk
    pool = ExtractPool(ExtractConfig(timeout=1, language="", max_worker_memory_mb=0), processes=1, then=_Wedged())
    pool.GRACE = 1.0
    try:
        results = pool.map(pages)
        again = pool.map([page(article(20), 20)])   # a fresh pool replaced the wedged one
    finally:
        pool.close()
    assert results[7][0] == "extract_timeout" and "worker killed" in results[7][1]
    assert all(isinstance(r, Document) for k, r in enumerate(results) if k != 7), results
    assert isinstance(again[0], Document) and pool.restarts == 1


def test_memory_cap_is_a_named_drop_and_the_pool_keeps_working():
    pages = [page(article(0), 0), page(balloon(), 1), page(article(2), 2)]
    pool = ExtractPool(ExtractConfig(timeout=60, language="", max_worker_memory_mb=100), processes=1)
    try:
        results = pool.map(pages)
        again = pool.map([page(article(3), 3)])
    finally:
        pool.close()
    assert results[1][0] in ("extract_memory", "extract_crashed"), results[1]
    assert isinstance(results[0], Document) and isinstance(results[2], Document)
    assert isinstance(again[0], Document)      # uncapped, the same page is a Document after ~20 s here


def _alarm_after_return(n: int, page_, cfg):
    """document_with_alarm with SIGALRM delivered at the n-th bytecode of the worker function after extraction
    returned: an opcode tracer sends the real signal to this process, and its handler runs right there."""
    caller, callee = document_with_alarm.__code__, pool_module.document_from_page.__code__
    state = {"returned": False, "count": 0, "fired": False}

    def tracer(frame, event, arg):
        if frame.f_code is callee:
            if event == "return":
                state["returned"] = True
            return tracer
        if frame.f_code is caller:
            frame.f_trace_opcodes = True
            if event == "opcode" and state["returned"]:
                if state["count"] == n:
                    state["fired"] = True
                    os.kill(os.getpid(), signal.SIGALRM)
                state["count"] += 1
            return tracer
        return None

    sys.settrace(tracer)
    try:
        return document_with_alarm(page_, cfg, pool_module.LinkRules()), state["fired"]
    finally:
        sys.settrace(None)
        signal.setitimer(signal.ITIMER_REAL, 0)


def test_an_alarm_as_the_page_finishes_never_escapes():
    """Every instant between the end of extraction and the worker function's return: the page keeps its result
    (or ends as extract_timeout); ExtractTimeout never leaves the worker to fail the bundle."""
    cfg = ExtractConfig(timeout=30, language="")
    old = signal.getsignal(signal.SIGALRM)
    try:
        for n in range(60):
            result, fired = _alarm_after_return(n, page(article(n), n), cfg)
            assert isinstance(result, Document) or result[0] == "extract_timeout", (n, result)
            if not fired:         # past the function's last bytecode: every position was tried
                break
        assert n > 2
    finally:
        signal.signal(signal.SIGALRM, old)


def test_config_checks_memory_cap():
    with pytest.raises(ValueError):
        ExtractConfig(max_worker_memory_mb=-1)


def _slow_work(doc):
    import time
    time.sleep(5)
    return doc


def test_an_alarm_inside_the_per_document_work_ends_the_page_as_a_timeout():
    # The Document exists before `then` runs; if the alarm fires inside `then`, that unfinished Document (its
    # quality rules never ran) must not come out as the page's result.
    result = document_with_alarm(page(article(1), 1), ExtractConfig(timeout=0.5, language=""), LinkRules(),
                                 then=_slow_work)
    assert result[0] == "extract_timeout", result
    done = document_with_alarm(page(article(1), 1), ExtractConfig(timeout=30, language=""), LinkRules(),
                               then=lambda d: d._replace(text="x"))
    assert isinstance(done, Document) and done.text == "x"


def _extraction_processes() -> int:
    """Extraction workers alive in this process's pools: the forkserver's children (it forks nothing else)."""
    from multiprocessing import forkserver
    server = forkserver._forkserver._forkserver_pid
    return len(_descendants(server)) if server else 0


def test_dofn_instances_in_one_process_share_one_pool_of_at_most_the_cores():
    """Runners run several instances of the extraction DoFn in one worker process (Prism, Flink and Spark run
    bundles in parallel threads): they must lease one pool there, never one each."""
    from crawl.text.transform import _ExtractBatch
    cfg = ExtractConfig(timeout=60, language="")          # processes=0: the cores
    dofns = [_ExtractBatch(cfg, LinkRules(), quiet=True) for _ in range(3)]
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _extraction_processes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outputs = {}
    try:
        for d in dofns:
            d.setup()

        def run(k):   # one bundle: batches are extracted one behind the other, the last handed on at its end
            dofns[k].start_bundle()
            out = list(dofns[k].process([page(article(i), i) for i in range(8 * k, 8 * k + 8)]))
            outputs[k] = out + [v.value for v in dofns[k].finish_bundle()]

        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        pools = {id(getattr(d.pool, "_pool", d.pool)) for d in dofns}
    finally:
        for d in dofns:
            d.teardown()
        stop.set()
        sampler.join(timeout=5)
    assert 1 <= peak[0] <= min(pool_module.default_processes(), os.cpu_count()), peak[0]
    assert len(pools) == 1
    assert all(isinstance(r, Document) for k in range(3) for r in outputs[k]) and len(outputs) == 3
    assert [r.url for r in outputs[2]] == [f"http://example.com/{i}" for i in range(16, 24)]
    for _ in range(100):          # the last lease closed the pool: its workers end
        if _extraction_processes() == 0:
            break
        threading.Event().wait(0.1)
    assert _extraction_processes() == 0 and not getattr(pool_module, "_SHARED", None)


def test_the_next_batch_is_extracted_while_the_last_ones_documents_are_handed_on():
    """The extraction DoFn hands a batch to the pool and returns the batch before it: the workers are never idle
    while the bundle's thread does Beam's work on the documents. The last batch comes out at the bundle's end."""
    from crawl.text.transform import _ExtractBatch
    dofn = _ExtractBatch(ExtractConfig(processes=1, timeout=60, language=""), LinkRules(), quiet=True)
    dofn.setup()
    try:
        dofn.start_bundle()
        batches = [[page(article(i), i) for i in range(4 * b, 4 * b + 4)] for b in range(3)]
        first = list(dofn.process(batches[0]))        # queued: nothing to hand on yet
        assert first == [] and len(dofn.queued) == 1
        second = list(dofn.process(batches[1]))       # batch 0's documents, while batch 1 is in the pool
        assert [d.url for d in second] == [f"http://example.com/{i}" for i in range(4)]
        third = list(dofn.process(batches[2]))
        assert [d.url for d in third] == [f"http://example.com/{i}" for i in range(4, 8)]
        rest = [v.value for v in dofn.finish_bundle()]
        assert [d.url for d in rest] == [f"http://example.com/{i}" for i in range(8, 12)] and not dofn.queued
    finally:
        dofn.teardown()
