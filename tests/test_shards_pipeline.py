"""WriteShards as a real Beam pipeline (FnApiRunner): the shard count follows from the tokens, reruns into the
same directory remove only shards webtext's previous manifest listed, and a user's other files survive."""
import hashlib
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pydoc_data.topics
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from core.records import Document
from core.shard_format import MANIFEST, TokenizedDoc, read_manifest, verify
from pipeline.config import ShardConfig
from pipeline.shards.assemble import write_shard
from pipeline.shards.write import PARTS_DIR, WriteShards


def documents():
    docs = []
    for name, text in sorted(pydoc_data.topics.topics.items()):
        url = f"https://docs.python.org/3/reference/{name}"
        docs.append(Document(hashlib.blake2b(url.encode(), digest_size=8).hexdigest(), url, text, 5, ("Python",),
                             1_500_000_000))
    return docs


def write(out: Path, cfg: ShardConfig, docs=None):
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = p | beam.Create(docs if docs is not None else documents()) | WriteShards(str(out), cfg, {"test": 1})
    return read_manifest(out)


def arrow_names(d: Path):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*.arrow"))


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    out = tmp_path_factory.mktemp("many")
    return out, write(out, ShardConfig(target_tokens=20_000, val_fraction=0.1, batch_tokens=4_000))


def test_shard_count_follows_from_the_tokens(many):
    out, manifest = many
    train = [s for s in manifest["shards"] if s["split"] == "train"]
    total = manifest["totals"]["train"]["tokens"]
    assert len(train) >= -(-total // 20_000) >= 5            # ~125k train tokens at 20k per shard
    assert all(s["num_shards"] == len(train) for s in train) and [s["index"] for s in train] == list(range(len(train)))
    assert all(s["tokens"] <= 20_000 or s["docs"] == 1 for s in train)   # over the target: one big document alone
    assert sum(s["docs"] for s in manifest["shards"]) == len(documents())
    assert verify(out) == []
    ranges = []   # shards are consecutive doc_id ranges: packed from buckets in order
    for s in train:
        ids = ipc.open_file(pa.memory_map(str(out / s["name"]))).read_all().column("doc_id").to_pylist()
        ranges.append((ids[0], ids[-1]))
    assert ranges == sorted(ranges) and all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
    assert not (out / PARTS_DIR).exists()   # the bucket part files are gone once the manifest is written


def test_shards_streamed_from_bucket_parts_equal_shards_written_whole(many, tmp_path):
    """The pipeline streams each shard from its buckets' part files; writing the same documents in one go
    (assemble.write_shard) gives the same bytes: batches depend only on the rows, not on how they were spilled."""
    out, manifest = many
    for s in manifest["shards"]:
        table = ipc.open_file(pa.memory_map(str(out / s["name"]))).read_all()
        chunks = [(len(c), int(np.diff(c.offsets.to_numpy()).sum())) for c in table.column("tokens").chunks]
        assert all(tokens <= 4_000 or rows == 1 for rows, tokens in chunks) and sum(t for _, t in chunks) == s["tokens"]
        assert len(chunks) > 1 or s["tokens"] <= 4_000
        docs = [TokenizedDoc(r["doc_id"], r["url"], np.array(r["tokens"], np.uint16), r["karma"],
                             tuple(r["subreddits"]), r["created_utc"]) for r in table.to_pylist()]
        info = write_shard(str(tmp_path), s["split"], s["index"], s["num_shards"], docs[::-1], 4_000)
        assert info.sha256 == s["sha256"] and (tmp_path / s["name"]).read_bytes() == (out / s["name"]).read_bytes()


def test_same_documents_in_another_order_give_the_same_bytes(many, tmp_path):
    out, manifest = many
    again = write(tmp_path, ShardConfig(target_tokens=20_000, val_fraction=0.1, batch_tokens=4_000),
                  list(reversed(documents())))
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in manifest["shards"]]
    for name in arrow_names(out):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes()


def test_reruns_remove_only_shards_our_previous_manifest_listed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "features.arrow").write_bytes(b"a user's features")
    (out / "notes.txt").write_text("a user's notes")
    (out / "train-00007-of-00009.arrow").write_bytes(b"named like a shard, but no manifest of ours listed it")
    first = write(out, ShardConfig(target_tokens=20_000, val_fraction=0.1))
    listed_first = {s["name"] for s in first["shards"]}
    assert len(listed_first) > 3

    # A hand-edited manifest naming the user's file: still not ours to delete (not a shard name).
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["shards"].append(dict(manifest["shards"][0], name="features.arrow"))
    (out / MANIFEST).write_text(json.dumps(manifest))

    second = write(out, ShardConfig(target_tokens=10**9, val_fraction=0.1))   # another shard count: 1 + 1
    listed_second = {s["name"] for s in second["shards"]}
    assert listed_second == {"data/train-00000-of-00001.arrow", "data/val-00000-of-00001.arrow"}
    assert arrow_names(out) == sorted(listed_second | {"features.arrow", "train-00007-of-00009.arrow"})
    assert (out / "features.arrow").read_bytes() == b"a user's features"
    assert (out / "notes.txt").read_text() == "a user's notes"
    assert (out / "train-00007-of-00009.arrow").read_bytes().startswith(b"named like a shard")
    assert not listed_first & set(arrow_names(out)) - listed_second   # every shard of the first run is gone
    problems = verify(out)
    assert sorted(problems) == ["features.arrow: shard on disk but not in the manifest",
                                "train-00007-of-00009.arrow: shard on disk but not in the manifest"]
