"""WriteShards' part files (pipeline/shards/write.py): one per WriteBucket bundle, whole or not at all, and the
shards joined from pieces of it equal shards written from the documents."""
import hashlib
import os
import pickle
import tempfile

import numpy as np
import pytest
from hypothesis import given, strategies as st

from core.shard_format import TokenizedDoc, bucket_of
from core.gather import chunk, framed
from pipeline.config import ShardConfig
from pipeline.shards.assemble import join_shard, write_shard, write_sorted
from pipeline.shards.write import PART_NAME, PARTS_DIR, Part, _WriteBucket, shard_tasks

BUCKETS = 64


def docs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        url = f"https://example.org/{i}"
        out.append(TokenizedDoc(hashlib.blake2b(url.encode(), digest_size=8).hexdigest(), url,
                                rng.integers(0, 50257, int(rng.integers(1, 300))).astype(np.uint16), i % 7,
                                ("a", "b") if i % 2 else (), 1_500_000_000 + i))
    return out


def by_bucket(items):
    groups = {}
    for d in items:
        groups.setdefault(("train", bucket_of(d.doc_id, BUCKETS)), []).append(d)
    return sorted(groups.items(), reverse=True)   # a bundle need not see its buckets in order


def gathered(items):
    """by_bucket as _WriteBucket receives it: each bucket's documents pickled, framed, in compressed chunks."""
    return [(key, [chunk(b"".join(framed(pickle.dumps(d, protocol=5)) for d in group))])
            for key, group in by_bucket(items)]


def test_a_bundle_writes_one_part_file_and_its_pieces_join_into_the_same_shard(tmp_path):
    cfg = ShardConfig(buckets=BUCKETS, batch_tokens=500, target_tokens=10**9)
    fn = _WriteBucket(str(tmp_path), cfg, str(tmp_path / "_payloads"))
    fn.start_bundle()
    for kv in gathered(docs()):
        assert list(fn.process(kv) or []) == []          # Parts come once the bundle's file is whole
    parts = [w.value for w in fn.finish_bundle()]
    fn.teardown()
    files = sorted((tmp_path / PARTS_DIR).iterdir())
    assert len(files) == 1 and PART_NAME.fullmatch(files[0].name)
    assert all(isinstance(p, Part) and p.path.endswith(files[0].name) and p.count >= 1 for p in parts)
    assert sum(p.docs for p in parts) == 200 and len({p.bucket for p in parts}) == len(parts)
    [(split, index, n, pieces)] = [t for t in shard_tasks(parts, cfg.target_tokens) if t[0] == "train"]
    joined = join_shard(str(tmp_path / "a"), split, index, n, pieces, cfg.batch_tokens)
    # the layout before: a sorted file per bucket, joined whole
    paths = []
    for (_, bucket), items in sorted(by_bucket(docs())):
        paths.append(str(tmp_path / f"b{bucket}.arrow"))
        write_sorted(paths[-1], items, cfg.batch_tokens, durable=False)
    before = join_shard(str(tmp_path / "b"), split, index, n, paths, cfg.batch_tokens)
    assert joined == before and joined.docs == 200     # name, counts, bytes and sha256: byte-identical
    assert (tmp_path / "a" / joined.name).read_bytes() == (tmp_path / "b" / before.name).read_bytes()


@pytest.mark.parametrize("seed,batch_tokens", [(0, 500), (1, 300), (2, 2000)])
def test_a_shard_joined_from_sorted_files_has_the_bytes_of_one_written_from_its_documents(tmp_path, seed, batch_tokens):
    # seed 0 at 500 tokens cuts a record batch whose rows all have no subreddits out of longer pieces
    paths = []
    for (_, bucket), items in sorted(by_bucket(docs(seed=seed))):
        paths.append(str(tmp_path / f"b{bucket}.arrow"))
        write_sorted(paths[-1], items, batch_tokens, durable=False)
    joined = join_shard(str(tmp_path / "a"), "train", 0, 1, paths, batch_tokens)
    written = write_shard(str(tmp_path / "b"), "train", 0, 1, docs(seed=seed), batch_tokens)
    assert joined == written and joined.docs == 200
    assert (tmp_path / "a" / joined.name).read_bytes() == (tmp_path / "b" / written.name).read_bytes()


def test_a_bundle_that_fails_leaves_no_part_file(tmp_path):
    fn = _WriteBucket(str(tmp_path), ShardConfig(buckets=BUCKETS), str(tmp_path / "_payloads"))
    fn.start_bundle()
    for kv in gathered(docs(40))[:3]:
        list(fn.process(kv) or [])
    fn.teardown()              # what Beam calls after process() raised: no finish_bundle
    assert list((tmp_path / PARTS_DIR).iterdir()) == []


@given(n=st.integers(1, 80), seed=st.integers(0, 2**32 - 1), batch_tokens=st.integers(20, 3000),
       buckets=st.sampled_from([1, 3, 64]), share_without=st.floats(0, 1))
def test_any_cut_into_sorted_files_joins_into_the_bytes_of_the_documents_written_whole(n, seed, batch_tokens, buckets,
                                                                                       share_without):
    rng = np.random.default_rng(seed)
    items = [TokenizedDoc(hashlib.blake2b(f"{seed}/{i}".encode(), digest_size=8).hexdigest(), f"https://x.org/{i}",
                          rng.integers(0, 50257, int(rng.integers(1, 400))).astype(np.uint16), int(rng.integers(0, 99)),
                          () if rng.random() < share_without else ("a", "bc")[:int(rng.integers(1, 3))], i)
             for i in range(n)]
    groups = {}
    for d in items:
        groups.setdefault(bucket_of(d.doc_id, buckets), []).append(d)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for bucket, part in sorted(groups.items()):
            paths.append(os.path.join(tmp, f"b{bucket}.arrow"))
            write_sorted(paths[-1], part, int(rng.integers(20, 3000)), durable=False)   # cut anyhow
        joined = join_shard(os.path.join(tmp, "a"), "train", 0, 1, paths, batch_tokens)
        written = write_shard(os.path.join(tmp, "b"), "train", 0, 1, items, batch_tokens)
        assert joined == written


def test_a_shard_joined_from_thousands_of_small_pieces_holds_its_batch_about_twice_in_arrow(tmp_path):
    """A small run's shard comes from thousands of buckets of a few rows each. Arrow's allocations while one record
    batch fills and is written stay near two copies of it (the rows gathered, then the batch built fresh); taking
    the rows out of the gathered pieces held ~5 copies (46 MB for a 9 MB batch)."""
    import pyarrow as pa
    from pipeline.shards.stream import BatchFile, rebatch, write_batches
    from core.shard_format import schema_with_metadata
    from pipeline.shards.assemble import piece_tables, record_batch
    rng = np.random.default_rng(3)
    part = BatchFile(str(tmp_path / "part.arrow"), schema_with_metadata(), durable=False)
    for b in range(1500):   # one bucket of 2 rows per record batch, as _WriteBucket writes them
        part.write(record_batch([TokenizedDoc(f"{b:08x}{i}", f"https://x.example/{b}/{i}",
                                              rng.integers(0, 50000, 700, dtype=np.uint16), 3, ("s",), 0)
                                 for i in range(2)]))
    part.close()
    pieces = [(part.path, b, 1) for b in range(1500)]
    batch_bytes = 1500 * 2 * 700 * 2
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    default = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        rows, tokens, _, _ = write_batches(str(tmp_path / "shard.arrow"), schema_with_metadata(),
                                           rebatch(piece_tables(pieces), 2**22))
    finally:
        pa.set_memory_pool(default)
    assert (rows, tokens) == (3000, 3000 * 700)
    assert pool.max_memory() < 2.6 * batch_bytes, f"{pool.max_memory() / 2**20:.1f} MB for {batch_bytes / 2**20:.1f}"
