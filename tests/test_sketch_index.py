"""The sketch and URL index a run writes at its end (pipeline/corpus.py index_generation, dedup/index.py write):
built from the run's payload files and shards with ids held as 64-bit keys, it must equal what a plain build of
the same rows gives, including a document a retried bundle wrote into two payload files (indexed once, at its
first row) and a text without words (no band keys)."""
import hashlib

import numpy as np

from core import payloads
from core.shard_format import read_manifest
from crawl import seen
from dedup import index as sketch_index
from dedup.config import DedupConfig
from dedup.minhash import band_keys, banding, sig_array, sketch
from pipeline import corpus
from test_shards import prose_corpus, tokenized, write_dir


class _Doc:
    def __init__(self, d):
        self.__dict__.update(d, fingerprint="", sig=b"")


def _rows(docs, cfg):
    out = []
    for d in docs:
        sk = sketch(_Doc(d), cfg)
        out.append((d["doc_id"], np.arange(5, dtype="<u2").tobytes(), sk.sig, sk.fingerprint))
    return out


def test_index_of_a_run_equals_a_plain_build(tmp_path):
    cfg = DedupConfig()
    docs = prose_corpus()[:24]
    wordless = dict(docs[0], doc_id=hashlib.blake2b(b"empty", digest_size=8).hexdigest(), text="")
    run = tmp_path / "run"
    kept = docs[:16]                                   # the shards hold these; the rest were dedup drops
    write_dir(run, [tokenized(d) for d in kept])
    rows = _rows(docs + [wordless], cfg)
    pdir = payloads.payload_dir(str(run))
    payloads.write(pdir, rows[:14])
    payloads.write(pdir, rows[9:])                     # a retried bundle's other batch: rows 9..13 twice

    n = corpus.index_generation(str(run), str(run), 0, cfg)

    # the plain build: rows in file order, a doc_id's first row only, karma of the shards (0 when not kept)
    karma = {d["doc_id"]: d["karma"] for d in kept}
    files = sorted((tmp_path / "run" / "_payloads").glob("*.arrow"))
    plain, seen_ids = [], set()
    for f in files:
        t = payloads.read_sketches(str(f))
        for doc_id, fp, sig in zip(*(t.column(c).to_pylist() for c in ("doc_id", "fingerprint", "sig"))):
            if doc_id not in seen_ids:
                seen_ids.add(doc_id)
                plain.append((doc_id, karma.get(doc_id, 0), fp, sig, doc_id in karma))
    assert n == len(plain) == len(docs) + 1
    index = sketch_index.SketchIndex(sketch_index.generation_dir(str(run), 0))
    assert [index.match(r)[1:] for r in range(len(index))] == plain

    bands, rows_per_band = banding(cfg)
    want = [(k ^ (b * 0x9E3779B97F4A7C15 & (2**64 - 1)), row) for row, r in enumerate(plain) if r[3]
            for b, k in band_keys(sig_array(r[3]), bands, rows_per_band)]
    want.sort(key=lambda kr: kr[0])
    assert np.array_equal(index.band_keys, np.array([k for k, _ in want], np.uint64))
    assert np.array_equal(index.band_rows, np.array([r for _, r in want], np.uint32))
    assert sorted(index.fp_keys.tolist()) == index.fp_keys.tolist() == sorted(int(r[2][:16], 16) for r in plain)
    for row, r in enumerate(plain):                    # every document finds itself by its bands and fingerprint
        keys = np.array([h for _, h in band_keys(sig_array(r[3]), bands, rows_per_band)] if r[3] else [], np.uint64)
        assert row in index.rows_for(r[2], keys)
    urls = seen.SeenLinks([sketch_index.generation_dir(str(run), 0)])
    assert len(urls) == len(plain)
    assert read_manifest(str(run))["shards"]


def test_id_keys_are_the_url_index_keys():
    ids = [hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest() for i in range(50)]
    assert sketch_index.id_keys(ids).tolist() == [int(d, 16) for d in ids]
    assert sketch_index.id_keys(["00000000000000FF", "ab" * 8]).tolist() == [255, int("ab" * 8, 16)]
    assert sketch_index.id_keys([]).tolist() == []
