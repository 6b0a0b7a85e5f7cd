"""The trainer's shard loader: zero-copy reads, real windows, determinism, resumable position, rank-striding."""

import hashlib
from collections import Counter

import numpy as np
import pydoc_data.topics
import pytest

from core.shard_format import TokenizedDoc, shard_token_batches, shard_tokens, write_manifest
from core.tokenizer import EOT, encode_document
from pipeline.shards.assemble import write_shard
from train.data import TrainLoader, ValSet

T = 32


def write_prose_shards(out_dir, train_shards=2, val_every=10, batch_tokens=2**24):
    """Python's bundled English prose (pydoc topics), one document per topic, as real pipeline shards."""
    docs = []
    for name, text in sorted(pydoc_data.topics.topics.items()):
        doc_id = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        docs.append(TokenizedDoc(doc_id, f"https://docs.python.org/3/{name}", np.array(encode_document(text),
                                 np.uint16), 3, ("Python",), 1_500_000_000))
    val = docs[::val_every]
    train = [d for i, d in enumerate(docs) if i % val_every]
    infos = [write_shard(str(out_dir), "train", i, train_shards, train[i::train_shards], batch_tokens)
             for i in range(train_shards)]
    infos.append(write_shard(str(out_dir), "val", 0, 1, val, batch_tokens))
    write_manifest(str(out_dir), infos, config={"source": "pydoc_data.topics"})
    return out_dir


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_prose_shards(tmp_path_factory.mktemp("shards"))


def _flat(shards_dir, split="train"):
    return [shard_tokens(p)[0] for p in sorted(shards_dir.rglob(f"{split}-*.arrow"))]


def test_buffers_are_views_on_the_memory_map(shards):
    loader = TrainLoader(shards, 4, T)
    assert len(loader.data.buffers) == 2
    for buf in loader.data.buffers:
        assert buf.dtype == np.uint16
        assert not buf.flags.owndata and not buf.flags.writeable  # read-only memory map, not a private copy
    assert loader.data.num_tokens == sum(len(b) for b in _flat(shards))


def test_windows_are_contiguous_slices_of_the_shards(shards):
    loader = TrainLoader(shards, 8, T, seed=1)
    buffers = _flat(shards)
    for n in range(3):
        starts = loader.starts(loader.batch)
        x, y = loader.next_batch()
        assert x.shape == y.shape == (8, T)
        assert str(x.dtype) == "torch.int64"
        assert (x[:, 1:] == y[:, :-1]).all()  # targets are inputs shifted by one token
        for row_x, row_y, (s, pos) in zip(x, y, loader.data.locate(starts)):
            window = buffers[s][pos : pos + T + 1].astype(np.int64)
            assert (row_x.numpy() == window[:-1]).all() and (row_y.numpy() == window[1:]).all()


def test_document_sampling_starts_windows_at_document_starts(shards):
    loader = TrainLoader(shards, 8, T, sampling="document", seed=3)
    buffers = _flat(shards)
    for _ in range(5):
        for s, pos in loader.data.locate(loader.starts(loader.batch)):
            assert pos == 0 or buffers[s][pos - 1] == EOT  # the token before is the previous document's EOT
        loader.next_batch()


def test_same_seed_same_batches_other_seed_other_batches(shards):
    a, b, c = TrainLoader(shards, 4, T, seed=7), TrainLoader(shards, 4, T, seed=7), TrainLoader(shards, 4, T, seed=8)
    for _ in range(3):
        xa, _ = a.next_batch()
        xb, _ = b.next_batch()
        xc, _ = c.next_batch()
        assert (xa == xb).all()
        assert not (xa == xc).all()


@pytest.mark.parametrize("sampling", ["random", "document"])
def test_state_dict_continues_exactly(shards, sampling):
    a = TrainLoader(shards, 4, T, sampling=sampling, seed=5)
    for _ in range(4):
        a.next_batch()
    b = TrainLoader(shards, 4, T, sampling=sampling, seed=5)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        assert (a.next_batch()[0] == b.next_batch()[0]).all()


def test_ranks_split_the_same_global_batch(shards):
    """Two processes of 4 read disjoint halves of exactly the global batch one process of 8 reads."""
    single = TrainLoader(shards, 8, T, seed=11)
    r0 = TrainLoader(shards, 4, T, seed=11, rank=0, world_size=2)
    r1 = TrainLoader(shards, 4, T, seed=11, rank=1, world_size=2)
    for n in range(5):
        s0, s1 = r0.starts(n), r1.starts(n)
        assert Counter(single.starts(n).tolist()) == Counter(s0.tolist() + s1.tolist())


def test_document_epochs_read_every_document_once_across_ranks(shards):
    r0 = TrainLoader(shards, 3, T, sampling="document", seed=2, rank=0, world_size=2)
    r1 = TrainLoader(shards, 3, T, sampling="document", seed=2, rank=1, world_size=2)
    D = r0.data.num_starts
    seen0, seen1 = [], []
    for n in range(-(-D // 6)):  # enough global batches of 6 to cover one epoch
        seen0 += r0.starts(n).tolist()
        seen1 += r1.starts(n).tolist()
    ordered = [None] * (len(seen0) + len(seen1))  # back into sample order: sample k = (n*B + j)*W + rank
    ordered[0::2], ordered[1::2] = seen0, seen1
    epoch = ordered[:D]
    assert sorted(epoch) == list(range(D))  # each document exactly once per epoch, so the ranks never overlap
    assert not set(epoch[0::2]) & set(epoch[1::2])


def test_val_set_is_fixed_and_rank_disjoint(shards):
    a, b = ValSet(shards, 4, T, 3), ValSet(shards, 4, T, 3)
    assert len(a) == 3
    for (xa, ya), (xb, yb) in zip(a.batches(), b.batches()):
        assert (xa == xb).all() and (ya == yb).all()
    v0, v1 = ValSet(shards, 4, T, 3, rank=0, world_size=2), ValSet(shards, 4, T, 3, rank=1, world_size=2)
    starts0 = np.concatenate(v0.starts)
    starts1 = np.concatenate(v1.starts)
    assert not set(starts0.tolist()) & set(starts1.tolist())
    # the val split is read, not the train split
    val_tokens = _flat(shards, "val")[0]
    assert v0.data.num_tokens == len(val_tokens)


def test_mistakes_raise_clear_errors(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        TrainLoader(tmp_path, 4, T)
    with pytest.raises(ValueError, match="block_size"):
        TrainLoader(shards, 4, 10**7)


def test_shards_of_several_record_batches_are_one_zero_copy_buffer_per_batch(tmp_path):
    """Shards are written as record batches of <= batch_tokens tokens; the loader maps each batch's flat buffer
    (no copy), and a window never straddles two batches (their buffers are not adjacent in the file)."""
    d = write_prose_shards(tmp_path, batch_tokens=4_000)
    parts = [p for path in sorted(d.rglob("train-*.arrow")) for p in shard_token_batches(path)]
    assert len(parts) > 10
    loader = TrainLoader(d, 16, T, seed=4)
    assert len(loader.data.buffers) == len(parts)
    for buf, (tokens, _) in zip(loader.data.buffers, parts):
        assert not buf.flags.owndata and not buf.flags.writeable and np.array_equal(buf, tokens)
    assert loader.data.num_tokens == sum(len(b) for b in _flat(d)) == sum(len(t) for t, _ in parts)
    assert loader.data.num_starts == sum(len(t) - T for t, _ in parts)
    for _ in range(3):
        starts = loader.starts(loader.batch)
        x, y = loader.next_batch()
        for row_x, row_y, (b, pos) in zip(x, y, loader.data.locate(starts)):
            assert pos + T + 1 <= len(parts[b][0])   # inside one batch
            window = parts[b][0][pos : pos + T + 1].astype(np.int64)
            assert (row_x.numpy() == window[:-1]).all() and (row_y.numpy() == window[1:]).all()
    doc = TrainLoader(d, 8, T, sampling="document", seed=3)
    for b, pos in doc.data.locate(doc.starts(0)):
        assert pos == 0 or parts[b][0][pos - 1] == EOT
