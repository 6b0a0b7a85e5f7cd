"""Payload files (core/payloads.py, pipeline/per_document.WritePayloads): tokens and signatures are written once,
after extraction; shuffles carry references only; the shards are byte-identical to those of the plain path; a
payload file is never visible torn, and its name is a function of its bytes (a rerun finds the same file)."""
import os
import pickle
import signal
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pipeline import PipelineVisitor

from conftest import beam_pipeline
from core import payloads
from core.records import Document
from crawl.text.quality import QualityRules
from dedup.exact import _gathered
from dedup.minhash import banding
from dedup.transform import _keyed_entry
from dedup import DedupConfig, Deduplicate
from pipeline.config import ShardConfig
from pipeline.outdir import remove_leftovers
from pipeline.per_document import DocumentWork, WritePayloads
from core.shard_format import read_manifest
from pipeline.shards.write import WriteShards, tokenize
from test_per_document import docs

WORK = DocumentWork(QualityRules(), DedupConfig())
SHARDS = ShardConfig(target_tokens=30_000, val_fraction=0.2, batch_tokens=5_000)


def filled():
    out = [WORK(d) for d in docs()]
    out = [d for d in out if isinstance(d, Document)]
    # an exact copy under another URL (dedup drops one) and a near copy (a few words changed)
    out.append(out[0]._replace(doc_id="0" * 16, url="https://mirror.example/a", karma=1))
    near = docs()[1]
    near = near._replace(doc_id="f" * 16, url="https://mirror.example/b", karma=1, text=near.text + " one more line")
    out.append(WORK(near))
    return out


class _Measure(beam.DoFn):
    def __init__(self, name):
        self.name = name

    def process(self, element):
        Metrics.distribution("shuffle", self.name).update(len(pickle.dumps(element)))


def measure_shuffles(p) -> list:
    """Adds a branch to the input of every GroupByKey (CoGroupByKey, Reshuffle and combiners use one too) that
    records the pickled size of each element crossing it."""
    inputs = []

    class Visit(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.GroupByKey):
                inputs.append((node.full_label, node.inputs[0]))

    p.visit(Visit())
    for i, (label, pcoll) in enumerate(inputs):
        _ = pcoll | f"Measure{i}" >> beam.ParDo(_Measure(label))
    return [label for label, _ in inputs]


def run(out: Path, payload: bool, measure: bool = False):
    p = beam_pipeline()
    documents = p | beam.Create(filled())
    if payload:
        documents = documents | beam.ParDo(WritePayloads(payloads.payload_dir(str(out)), max_docs=7))
        _ = documents | "RefsPointAtWholeFiles" >> beam.Map(_check_ref, out)
    unique = documents | Deduplicate(DedupConfig(max_rounds=1), payloads.payload_dir(str(out)) if payload else None)
    _ = unique["documents"] | WriteShards(str(out), SHARDS, {"test": 1})
    labels = measure_shuffles(p) if measure else []
    result = p.run()
    result.wait_until_finish()
    sizes = {d.key.metric.name: d.committed.max
             for d in result.metrics().query(MetricsFilter().with_namespace("shuffle"))["distributions"]}
    return {s["name"]: s["sha256"] for s in read_manifest(out)["shards"]}, labels, sizes


def _check_ref(doc, out):
    # a reference is sent on only once its file is there whole
    ref = payloads.parse_ref(doc.payload)
    path = out / payloads.PAYLOADS_DIR / f"{ref.file_id}.arrow"
    if not (doc.tokens == b"" and path.exists() and doc.doc_id in payloads.read_doc_ids(str(path))):
        raise AssertionError(f"{doc.doc_id}: reference to a missing file or tokens still attached")


def test_payload_path_writes_the_same_shards_and_no_tokens_cross_a_shuffle(tmp_path):
    plain, _, plain_sizes = run(tmp_path / "plain", payload=False, measure=True)
    via, labels, sizes = run(tmp_path / "payload", payload=True, measure=True)
    assert via == plain and len(plain) >= 3                       # byte-identical shards (sha256 in the manifest)
    # the shuffles of the documents: exact dedup, LSH candidates, final join, shard buckets
    assert len(labels) >= 5 and set(sizes) == set(labels)
    tokens = sum(len(d.tokens) for d in filled()) / len(filled())
    assert tokens > 2000                                         # a document's tokens would show in the sizes
    assert max(plain_sizes.values()) > tokens                    # they did cross, on the plain path
    # (Near/GroupByBucket holds LSH candidates only, with their signatures, read from the payload files for them)
    # (the LSH bands cross no shuffle: written to band files, only their paths go on, one list per band task)
    # (the exact groups hold each document's id and rank only: even gathered, a chunk of this run's is small)
    gathered = ("WriteShards/GroupByBucket/Group",)
    per_document = {k: v for k, v in sizes.items() if k.startswith("Deduplicate/")
                    and k not in ("Deduplicate/Near/GroupByBucket", *gathered)
                    and not k.startswith("Deduplicate/Near/Buckets/")}
    assert len(per_document) >= 3, per_document
    assert min(sizes[k] for k in gathered) > max(per_document.values()), sizes   # they are gathered
    records = [_gathered(_keyed_entry(d._replace(tokens=b"", payload="0123456789abcdef0123:1:2:3:4"), DedupConfig(),
                                      *banding(DedupConfig())))[1] for d in filled()]
    assert max(map(len, records)) < 400
    shard_records = [len(pickle.dumps(tokenize(d._replace(tokens=b"", payload="0123456789abcdef0123:1:2:3:4")),
                                      protocol=5)) for d in filled()]     # what a shard bucket's chunk holds each
    assert max(shard_records) < 400
    assert max(per_document.values()) < 400, sorted(per_document.items(), key=lambda kv: -kv[1])[:3]
    files = sorted((tmp_path / "payload" / payloads.PAYLOADS_DIR).glob("*.arrow"))
    assert len(files) == -(-len(filled()) // 7)                  # one file per 7 documents, kept after the run
    held = sorted(i for f in files for i in payloads.read_doc_ids(str(f)))
    assert held == sorted(d.doc_id for d in filled())


def test_same_documents_same_file_and_references(tmp_path):
    rows = [(d.doc_id, d.tokens, d.sig) for d in filled()[:5]]
    a = payloads.write(str(tmp_path / "a"), rows)
    b = payloads.write(str(tmp_path / "b"), rows)
    assert a == b and len({r.file_id for r in a}) == 1
    name = f"{a[0].file_id}.arrow"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with payloads.Reader(str(tmp_path / "a")) as reader:
        for (doc_id, tokens, sig), ref in zip(rows, a):
            assert reader.tokens(str(ref)).tobytes() == tokens and reader.sig(str(ref)) == sig
    other = payloads.write(str(tmp_path / "a"), rows[:4])      # other contents, another name
    assert other[0].file_id != a[0].file_id


def test_what_a_rerun_reads_back_is_what_was_written(tmp_path):
    """read_outcomes gives a payload file's documents with the same references write() returned; a drops file its
    Drops and the job that wrote it; a format-1 file (no fingerprints) nothing to reuse; the Reader is unchanged."""
    rows = [(d.doc_id, d.tokens, d.sig, d.fingerprint) for d in filled()[:5]]
    refs = payloads.write(str(tmp_path), rows)
    job, back = payloads.read_outcomes(str(tmp_path / f"{refs[0].file_id}.arrow"))
    assert job == "" and back == [(r[0], r[3], ref) for r, ref in zip(rows, refs)]
    assert payloads.read_doc_ids(str(tmp_path / f"{refs[0].file_id}.arrow")) == [r[0] for r in rows]
    drops = [("extract", "too_short", "http://a.example/", "12 chars"), ("quality", "bad_words", "http://b/", "")]
    path = payloads.write_drops(str(tmp_path), drops, job="j1")
    assert path.endswith(".drops") and payloads.read_outcomes(path) == ("j1", drops)
    assert payloads.write_drops(str(tmp_path), []) == ""
    old = payloads.pa.schema([f for f in payloads.SCHEMA if f.name != "fingerprint"])   # webtext-payload-1
    table = payloads.pa.table({"doc_id": ["ab" * 8], "tokens": [[1, 2]], "sig": [b""]}, schema=old)
    with payloads.ipc.new_file(str(tmp_path / "old.arrow"), old) as w:
        w.write_table(table)
    assert payloads.read_outcomes(str(tmp_path / "old.arrow")) == ("", [])
    assert payloads.read_sketches(str(tmp_path / "old.arrow")).column("fingerprint").to_pylist() == [""]


def test_a_writer_killed_before_the_rename_leaves_no_visible_file(tmp_path, monkeypatch):
    d = tmp_path / "_payloads"
    pid = os.fork()
    if pid == 0:   # the writer: SIGKILLed after writing its bytes, before the rename that makes them visible
        try:
            monkeypatch.setattr(os, "replace", lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))
            payloads.write(str(d), [("ab" * 8, bytes(4000), bytes(512))])
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    written = [p.name for p in d.iterdir()]
    assert written and all(n.startswith(".") and n.endswith(".tmp") for n in written)   # the bytes, hidden
    assert list(d.glob("*.arrow")) == []                         # what a reader lists: nothing torn
    assert remove_leftovers(str(tmp_path)) and list(d.iterdir()) == []   # the next run's claim clears the temp
    refs = payloads.write(str(d), [("ab" * 8, bytes(4000), bytes(512))])                # the rerun
    assert payloads.read_doc_ids(str(d / f"{refs[0].file_id}.arrow")) == ["ab" * 8]
    with payloads.Reader(str(d)) as reader:
        assert np.count_nonzero(reader.tokens(refs[0])) == 0 and len(reader.sig(refs[0])) == 512


def test_a_bucket_is_written_from_payload_files_one_batch_at_a_time(tmp_path):
    """The bucket writer reads each document's tokens from its payload file in doc_id order and writes them on:
    Python-side allocations stay near one record batch, not the bucket's tokens (sorting gathered them all)."""
    import tracemalloc
    from core.shard_format import TokenizedDoc
    from pipeline.shards.assemble import write_sorted
    from pipeline.shards.write import with_tokens
    rng = np.random.default_rng(2)
    rows = [(f"{i:016x}", rng.integers(0, 50000, 4000, dtype=np.uint16).tobytes(), b"") for i in range(2000)]
    refs = payloads.write(str(tmp_path), rows)
    token_bytes = sum(len(t) for _, t, _ in rows)
    docs = [TokenizedDoc(d, f"http://x.example/{d}", str(r), 3, ("s",), 0) for (d, _, _), r in zip(rows, refs)][::-1]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with payloads.Reader(str(tmp_path)) as reader:
            n_docs, tokens, _, _ = write_sorted(str(tmp_path / "bucket.arrow"), with_tokens(docs, reader), 2**19,
                                                durable=False, presorted=True)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert n_docs == 2000 and tokens * 2 == token_bytes
    assert peak < 0.4 * token_bytes, f"bucket writer peaked at {peak / 2**20:.1f} MB for {token_bytes / 2**20:.1f} MB"
