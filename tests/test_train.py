"""The trainer end to end on CPU: real shards -> tiny GPT-2 -> loss goes down; exact resume; checkpoint, log, plot;
user mistakes; sampling; DDP under torchrun (gloo) matching one process."""

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pydoc_data.topics
import pytest
import torch

from core.shard_format import TokenizedDoc, write_manifest
from core.tokenizer import encode_document
from pipeline.shards.assemble import write_shard
from train import sample, train
from train.checkpoint import load_checkpoint

# small enough for ~30 ms steps on a 2-core CPU; the vocabulary stays GPT-2's full 50257
TINY = ["--n-embd", "32", "--block-size", "32", "--batch-size", "4"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain little from a second thread, and on a busy 2-core CI box a 2-thread OpenMP team waiting on a
    descheduled thread made these tests 5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Python's bundled English prose (pydoc topics), one document per topic, as real pipeline shards."""
    out = tmp_path_factory.mktemp("shards")
    docs = [TokenizedDoc(hashlib.blake2b(name.encode(), digest_size=8).hexdigest(), f"https://docs.python.org/{name}",
                         np.array(encode_document(text), np.uint16), 3, ("Python",), 1_500_000_000)
            for name, text in sorted(pydoc_data.topics.topics.items())]
    infos = [write_shard(str(out), "train", i, 2, [d for j, d in enumerate(docs) if j % 10 and j % 2 == i])
             for i in range(2)]
    infos.append(write_shard(str(out), "val", 0, 1, docs[::10]))
    write_manifest(str(out), infos, config={})
    return out


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory):
    """One smoke run: 200 steps from a TOML config plus command-line overrides."""
    out = tmp_path_factory.mktemp("run")
    toml = out / "tiny.toml"
    toml.write_text('base = "tiny"\nn_embd = 32\nblock_size = 32\nbatch_size = 4\nlr = 3e-3\neval_interval = 50\n')
    rc = train.main(["--config", str(toml), "--data", str(shards), "--out", str(out), "--max-steps", "200",
                     "--log-interval", "25", "--quiet"])
    assert rc == 0
    return out


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_smoke_run_lowers_val_loss(run):
    records = _log(run)
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    assert [s for s, _ in val] == [0, 50, 100, 150, 200]
    assert abs(val[0][1] - math.log(50257)) < 0.3  # untrained: about uniform over the vocabulary
    assert val[-1][1] < val[0][1] - 3.0  # clearly learned something (~10.8 -> ~6.x)
    assert val[-1][1] < val[1][1]  # still improving after the first evaluation


def test_log_has_one_record_per_logged_step(run):
    records = _log(run)
    trained = [r for r in records if r["step"] > 0]
    assert [r["step"] for r in trained] == list(range(25, 201, 25))
    for r in trained:
        assert {"step", "loss", "lr", "tokens_per_s", "mfu"} <= r.keys()
        assert r["mfu"] is None  # CPU: no known peak
        assert r["tokens_per_s"] > 0 and 0 < r["lr"] <= 3e-3 and math.isfinite(r["loss"])
    assert trained[-1]["lr"] == pytest.approx(3e-4, rel=1e-3)  # the cosine ends at min_lr (tiny preset)


def test_checkpoint_holds_everything(run):
    ckpt = load_checkpoint(run / "ckpt.pt")  # weights_only: plain data, no pickled code
    assert ckpt["step"] == 200
    assert {"model", "optimizer", "step", "config", "rng", "loader"} <= ckpt.keys()
    assert ckpt["config"]["n_embd"] == 32 and ckpt["config"]["max_steps"] == 200 and ckpt["config"]["n_layer"] == 2
    assert ckpt["loader"]["batch"] == 200  # one micro-batch per step
    assert set(ckpt["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert "transformer.h.1.attn.c_attn.weight" in ckpt["model"]
    assert len(ckpt["optimizer"]["state"]) == len(list(p for p in ckpt["model"] if p != "lm_head.weight"))
    assert not list(run.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_loss_plot_is_written(run):
    png = (run / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_sample_continues_the_prompt_deterministically(run, capsys):
    args = ["--ckpt", str(run / "ckpt.pt"), "--prompt", "The class", "--max-new-tokens", "12", "--seed", "3"]
    assert sample.main(args) == 0
    first = capsys.readouterr().out
    assert sample.main(args) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("The class") and len(first) > len("The class\n")
    assert sample.main(["--ckpt", str(run / "missing.pt")]) == 2


def test_resume_continues_exactly(shards, tmp_path):
    """2N steps straight == N steps, stop, --resume, N more: same losses bit for bit, same weights."""
    common = ["--config", "tiny", "--data", str(shards), *TINY, "--dropout", "0.1", "--tokens-per-step", "256",
              "--lr-decay-steps", "12", "--warmup-steps", "3", "--log-interval", "1", "--eval-interval", "6",
              "--ckpt-interval", "100", "--quiet"]  # 256 tokens = 2 micro-batches of 4x32: accumulation too
    assert train.main([*common, "--out", str(tmp_path / "a"), "--max-steps", "12"]) == 0
    assert train.main([*common, "--out", str(tmp_path / "b"), "--max-steps", "6"]) == 0
    assert train.main([*common, "--out", str(tmp_path / "b"), "--max-steps", "12", "--resume"]) == 0
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(13))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r.get("val_loss") for r in a] == [r.get("val_loss") for r in b]
    ca, cb = load_checkpoint(tmp_path / "a" / "ckpt.pt"), load_checkpoint(tmp_path / "b" / "ckpt.pt")
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    assert ca["loader"] == cb["loader"] and ca["loader"]["batch"] == 24


@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}", "--out", "{out}"], "does not exist"),
    (["--data", "{empty}", "--out", "{out}"], "no manifest.json"),
    (["--data", "{shards}", "--out", "{out}", "--config", "gpt5"], "unknown config"),
    (["--data", "{shards}", "--out", "{out}", "--config", "{bad_toml}"], "unknown config key 'learning_rate'"),
    (["--data", "{shards}", "--out", "{out}", "--no-such-flag", "1"], "unrecognized arguments"),
    (["--data", "{shards}", "--out", "{out}", "--lr", "fast"], "invalid float value"),
    (["--data", "{shards}", "--out", "{out}", "--resume"], "no checkpoint"),
    (["--data", "{shards}", "--out", "{out}", "--config", "tiny", "--tokens-per-step", "1000"], "not a multiple"),
    (["--data", "{shards}", "--out", "{out}", "--config", "tiny", "--block-size", "100000"], "block_size"),
])
def test_user_mistakes_exit_2_with_one_line(shards, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('base = "tiny"\nlearning_rate = 0.1\n')
    paths = dict(missing=tmp_path / "nope", empty=tmp_path / "empty", shards=shards, out=tmp_path / "out",
                 bad_toml=bad_toml)
    assert train.main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_ddp_two_processes_match_one(shards, tmp_path):
    """torchrun with 2 CPU processes (gloo) x batch 2 sees the same global batches as 1 process x batch 4, so the
    losses agree up to float rounding; rank-strided data and gradient all-reduce both have to be right for that."""
    common = ["--config", "tiny", "--data", str(shards), "--n-embd", "32", "--block-size", "32", "--max-steps", "4",
              "--log-interval", "1", "--eval-interval", "0", "--quiet"]
    assert train.main([*common, "--out", str(tmp_path / "one"), "--batch-size", "4"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train.train",
         *common, "--out", str(tmp_path / "two"), "--batch-size", "2", "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
    assert load_checkpoint(tmp_path / "two" / "ckpt.pt")["world_size"] == 2


# ------------------------------------------------------------------ never lose a run, say clearly what went wrong
def _one_line_error(capsys, argv, code=2):
    assert train.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_run_directory_is_not_started_over_without_overwrite(shards, tmp_path, capsys):
    common = ["--config", "tiny", "--data", str(shards), *TINY, "--eval-interval", "0", "--quiet", "--log-interval", "1",
              "--out", str(tmp_path)]
    (tmp_path / "notes.txt").write_text("mine")
    assert train.main([*common, "--max-steps", "2"]) == 0
    log_before = (tmp_path / "log.jsonl").read_text()
    err = _one_line_error(capsys, [*common, "--max-steps", "3"])
    assert "holds a training run" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "log.jsonl").read_text() == log_before and load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    assert train.main([*common, "--max-steps", "3", "--overwrite"]) == 0
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 3 and [r["step"] for r in _log(tmp_path)] == [1, 2, 3]
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("content, message", [
    ("truncated", "not a readable webtext checkpoint"),
    ("garbage", "not a webtext checkpoint"),
    ("foreign", "not a webtext checkpoint"),
])
def test_a_bad_checkpoint_is_one_line(run, tmp_path, capsys, content, message):
    path = tmp_path / "ckpt.pt"
    if content == "truncated":
        data = (run / "ckpt.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "garbage":
        path.write_bytes(b"\x80\x04 not a checkpoint at all" * 10)
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    assert sample.main(["--ckpt", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "weights_only" not in err and len(err.strip().splitlines()) == 1, err


def test_resume_from_a_truncated_checkpoint_is_one_line(run, shards, tmp_path, capsys):
    data = (run / "ckpt.pt").read_bytes()
    (tmp_path / "ckpt.pt").write_bytes(data[:1000])
    err = _one_line_error(capsys, ["--data", str(shards), "--out", str(tmp_path), "--resume"])
    assert "not a readable webtext checkpoint" in err and "weights_only" not in err


def _docs(ids_of_tokens):
    return [TokenizedDoc(f"{i:016x}", f"https://example.com/{i}", np.array(t, np.uint16), 3, ("x",), 0)
            for i, t in enumerate(ids_of_tokens)]


def _write(out, train_docs, val_docs, tamper=None):
    infos = [write_shard(str(out), "train", 0, 1, train_docs), write_shard(str(out), "val", 0, 1, val_docs)]
    manifest = write_manifest(str(out), infos, config={})
    if tamper:
        tamper(manifest)
        (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-20] ^= 1
    path.write_bytes(bytes(data))


PROSE = [list(range(100 + k, 400 + k)) + [50256] for k in range(8)]


@pytest.mark.parametrize("case, message", [
    ("token_out_of_range", "token id 60000 >= vocab_size 50257"),
    ("checksum", "sha256 does not match"),
    ("tokenizer", "not this trainer's GPT-2 BPE"),
    ("name", "not a shard name"),
    ("truncated", "truncated or replaced"),
    ("memory", "needs ~"),
])
def test_bad_shards_and_impossible_sizes_fail_at_load_in_one_line(tmp_path, capsys, case, message):
    data = tmp_path / "data"
    data.mkdir()
    train_docs = _docs([*PROSE, [1, 2, 60000, 50256]] if case == "token_out_of_range" else PROSE)
    tamper = {"tokenizer": lambda m: m["tokenizer"].update(tokenizer="llama3"),
              "name": lambda m: m["shards"][0].update(name="../../etc/train-00000-of-00001.arrow")}.get(case)
    _write(data, train_docs, _docs(PROSE[:2]), tamper)
    if case == "checksum":
        _flip_last_byte(data / "data" / "train-00000-of-00001.arrow")
    if case == "truncated":
        shard = data / "data" / "train-00000-of-00001.arrow"
        shard.write_bytes(shard.read_bytes()[:-100])
    args = ["--config", "tiny", "--data", str(data), "--out", str(tmp_path / "out"), *TINY, "--max-steps", "1",
            "--quiet"]
    if case == "memory":   # 4096 x 1024 tokens: ~2.5 TB of logits alone
        args += ["--batch-size", "4096", "--block-size", "1024", "--tokens-per-step", str(4096 * 1024)]
    err = _one_line_error(capsys, args)
    assert message in err


def test_short_val_split_and_giant_step_are_warned_with_numbers(tmp_path, capsys):
    data = _write(tmp_path / "data", _docs(PROSE), _docs([[5, 6, 50256]]))   # val: 3 tokens, no 33-token window
    out = tmp_path / "out"
    args = ["--config", "tiny", "--data", str(data), "--out", str(out), *TINY, "--max-steps", "1", "--quiet",
            "--tokens-per-step", str(4 * 32 * 32)]
    assert train.main(args) == 0
    err = capsys.readouterr().err
    assert "no val shard holds a window of block_size+1 = 33 tokens (3 tokens): no val loss" in err
    assert f"one step reads {4 * 32 * 32:,} tokens, more than the whole train split (2,408)" in err
