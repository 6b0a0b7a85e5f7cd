"""#18 item 3, resume any run: SIGKILL a `webtext run` inside the extraction, or once every page was extracted
(dedup and shards), rerun the same command: what was on disk is not fetched or extracted again, a line
says what is reused, stats.json adds up to an uninterrupted run's, and the shards are byte-identical to its."""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from core import payloads
from core.records import DROPPED, Document, Drop, Link, doc_id_for
from pipeline.demo.web import build_demo
from pipeline.per_document import KeepDrops, WritePayloads
from pipeline.resume import Resume
from webtext import main

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("fetch", "extract", "quality", "dedup", "shards")


def args(demo, out, proxy, *extra):
    return ["run", "--input", str(demo.dump_path), "--out", str(out), "--http-proxy", proxy,
            "--set", "fetch.min_delay=0.15", "--set", "fetch.warc_rotate=3", "--set", "shards.target_tokens=8000",
            "--set", "extract.batch_size=1", "--set", "run.commit_seconds=0.05", *extra]


def shards_of(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return ({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("data/*.arrow"))},
            sorted(s["sha256"] for s in manifest["shards"]))


def stats_of(out):
    return json.loads((out / "stats.json").read_text())


def counts(stats):
    return {s: (v["in"], v["out"], v["dropped"]) for s, v in stats["stages"].items() if s in STAGES}


def requested(log):
    return [f"http://{host}{path}" for _, _, host, path in log if not path.startswith("/robots.txt")]


class Durable:
    """The outcomes in a run's complete payload and drops files, read as they appear."""

    def __init__(self, out):
        self.dir, self.seen = out / payloads.PAYLOADS_DIR, {}

    def doc_ids(self):
        for p in list(self.dir.glob("*.arrow")) + list(self.dir.glob("*" + payloads.DROPS_SUFFIX)):
            if p not in self.seen:
                _, rows = payloads.read_outcomes(str(p))
                self.seen[p] = {doc_id_for(r[2]) if p.suffix == payloads.DROPS_SUFFIX else r[0] for r in rows}
        return set().union(*self.seen.values()) if self.seen else set()


def kill_when(cmd, ready, timeout=90):
    proc = subprocess.Popen([sys.executable, "-m", "webtext", *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the run and its extraction workers: no cleanup at all
        proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo web, and an uninterrupted run's shards and stats."""
    tmp = tmp_path_factory.mktemp("resume")
    d = build_demo(tmp / "web")
    with d.web as web:
        assert main(args(d, tmp / "clean", web.proxy_url, "--quiet")) == 0
        yield d, web, shards_of(tmp / "clean"), stats_of(tmp / "clean")


def check_rerun(out, clean_shards, clean_stats, stderr, reused):
    stats = stats_of(out)
    assert shards_of(out) == clean_shards
    assert counts(stats) == counts(clean_stats)
    assert stats["unbalanced"] == [] and stats["metrics_vs_data"] == []
    assert all(v["balanced"] for v in stats["stages"].values())
    extract = stats["stages"]["extract"]
    n_links = clean_stats["stages"]["fetch"]["in"]
    assert f"resuming: {len(reused):,} of {n_links:,} pages already extracted" in stderr
    # every page on disk was reused, and only those: the pool extracted the rest
    assert extract["extra"]["reused"] == len(reused)
    assert stats["stages"]["fetch"]["extra"]["reused"] == len(reused)
    return extract["in"] - extract["extra"]["reused"]


def rerun(cmd, capsys, web):
    capsys.readouterr()
    mark = len(web.log)
    assert main(cmd) == 0
    return capsys.readouterr().err, {doc_id_for(u) for u in requested(web.log[mark:])}


def test_kill_in_each_stage_then_rerun(demo, tmp_path, capsys):
    d, web, clean_shards, clean_stats = demo
    out, warc = tmp_path / "out", tmp_path / "warc"
    cmd = args(d, out, web.proxy_url, "--warc-dir", str(warc))
    durable, pages = Durable(out), clean_stats["stages"]["extract"]["in"]
    # 1. killed while extracting. (The demo's few hosts end their fetch before its extraction starts, so a kill in
    # its fetch leaves only the WARC outcomes, replayed as before: tests/test_interrupt_e2e.py, test_resume_e2e.py.)
    kill_when(cmd, lambda: len(durable.doc_ids()) > 0)
    reused = durable.doc_ids()
    assert not (out / "manifest.json").exists()
    assert 0 < len(reused) < pages, "the kill came after the extraction had ended"
    later = tmp_path / "later"          # the same state, for 2. (the job does not depend on where --out is)
    shutil.copytree(out, later / "out")
    shutil.copytree(warc, later / "warc")

    stderr, fetched = rerun(cmd, capsys, web)
    assert not fetched & reused, "fetched again though its outcome was on disk"
    assert re.search(r"resuming: [\d,]+ of [\d,]+ links already fetched", stderr)   # the WARC has the rest
    assert check_rerun(out, clean_shards, clean_stats, stderr, reused) == pages - len(reused)

    # 2. from the state after 1., a run killed once every page is on disk (in dedup or shards)
    out = later / "out"
    cmd = args(d, out, web.proxy_url, "--warc-dir", str(later / "warc"))
    durable = Durable(out)
    kill_when(cmd, lambda: (out / ".webtext-buckets").exists() or len(durable.doc_ids()) == pages)
    assert not (out / "manifest.json").exists(), "the run had finished before the kill"
    reused = durable.doc_ids()
    assert len(reused) == pages
    stderr, fetched = rerun(cmd, capsys, web)
    assert not fetched                                               # nothing left to fetch
    assert check_rerun(out, clean_shards, clean_stats, stderr, reused) == 0   # nor to extract


# ------------------------------------------------------------------------------------ whose outcomes are reused
COLLECTED = {}


class _Collect(beam.DoFn):
    def __init__(self, tag):
        self.tag = tag

    def process(self, x):
        COLLECTED.setdefault(self.tag, []).append(x)


def test_only_outcomes_of_this_job_are_reused(tmp_path, capsys):
    """Drops another job wrote (left in --out after --overwrite) and payload files without fingerprints (format 1)
    are not reused; drops of a worker's death are never kept."""
    links = [Link(f"http://a.example/{i}", "a.example", 5, ("r",), 1) for i in range(4)]
    docs = [l.url for l in links[:2]]
    d = str(tmp_path)
    sig = b"\x01\x00\x00\x00" * 4
    payloads.write(d, [(doc_id_for(docs[0]), b"\x01\x00\x02\x00", sig, "fp0")])
    old = payloads.pa.schema([f for f in payloads.SCHEMA if f.name != "fingerprint"])   # format 1
    with payloads.ipc.new_file(str(tmp_path / f"{'0' * 20}.arrow"), old) as w:
        w.write_table(payloads.pa.table({"doc_id": [doc_id_for(docs[1])], "tokens": [[1]], "sig": [sig]}, old))
    payloads.write_drops(d, [("extract", "too_short", links[2].url, "12 chars")], job="mine")
    payloads.write_drops(d, [("quality", "bad_words", links[3].url, "")], job="other")
    keep = KeepDrops(d, "mine")
    keep.start_bundle()
    keep.process(Drop("extract", "extract_crashed", links[3].url, "worker died"))
    keep.finish_bundle()
    assert len(list(tmp_path.glob("*.drops"))) == 2   # the crash was not written

    p = beam.Pipeline(runner=FnApiRunner())
    out = p | beam.Create(links) | Resume(d, "mine")
    for tag in ("links", "documents", DROPPED):
        _ = out[tag] | f"Collect{tag}" >> beam.ParDo(_Collect(tag))
    p.run().wait_until_finish()
    assert "resuming: 2 of 4 pages already extracted (1 kept, 1 dropped; " in capsys.readouterr().err
    assert sorted(l.url for l in COLLECTED["links"]) == [links[1].url, links[3].url]
    (doc,) = COLLECTED["documents"]
    assert (doc.url, doc.fingerprint, doc.sig, doc.karma, doc.text, doc.tokens) == (docs[0], "fp0", sig, 5, "", b"")
    with payloads.Reader(d) as reader:
        assert reader.tokens(doc.payload).tolist() == [1, 2]
    assert [tuple(x) for x in COLLECTED[DROPPED]] == [("extract", "too_short", links[2].url, "12 chars")]


def test_write_payloads_commits_within_max_seconds(tmp_path):
    """A bundle's documents reach disk every `max_seconds` as they come, not only at the bundle's end."""
    w = WritePayloads(str(tmp_path), max_seconds=0.05)
    w.start_bundle()
    doc = Document("ab" * 8, "http://x.example/", "", 3, (), 1, tokens=b"\x01\x00", fingerprint="f", sig=b"")
    assert list(w.process(doc)) == []
    time.sleep(0.06)
    sent = list(w.process(doc._replace(doc_id="cd" * 8)))
    assert [s.doc_id for s in sent] == ["ab" * 8, "cd" * 8] and len(list(tmp_path.glob("*.arrow"))) == 1
    job, rows = payloads.read_outcomes(str(next(tmp_path.glob("*.arrow"))))
    assert [(r[0], r[1], str(r[2])) for r in rows] == [(s.doc_id, "f", s.payload) for s in sent]
