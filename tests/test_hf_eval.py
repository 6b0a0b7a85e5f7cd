"""The trainer in the HF world: export-hf loads in transformers with identical logits, --init-from starts from such a
directory, TensorBoard events beside log.jsonl, sample --stop-at-eot; and `webtext eval`: loss / perplexity / bits
per byte checked against a direct computation, the LAMBADA-style cloze scored right by an oracle and a uniform model."""

import json
import math

import numpy as np
import pydoc_data.topics
import pytest
import torch

from core.tokenizer import EOT, VOCAB_SIZE, decode, get_encoding
from train import eval as ev
from train import export_hf, train
from train.model import GPT, GPTConfig
from train.report import read_log
from train.sample import generate_text, load_model
from webtext import main as webtext
from test_data_loader import write_prose_shards

TINY = ["--config", "tiny", "--n-embd", "32", "--block-size", "32", "--batch-size", "4", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = write_prose_shards(tmp_path_factory.mktemp("shards"), train_shards=1)
    return out


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert train.main([*TINY, "--data", str(shards), "--out", str(out), "--max-steps", "40", "--log-interval", "10",
                       "--eval-interval", "20"]) == 0
    return out


@pytest.fixture(scope="module")
def hf_dir(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "model"
    assert webtext(["export-hf", "--ckpt", str(run / "ckpt.pt"), "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------------------------ export-hf
def test_export_hf_loads_in_transformers_with_identical_logits(run, hf_dir, capsys):
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(hf_dir), local_files_only=True).eval()
    ours = load_model(run / "ckpt.pt")
    idx = torch.randint(0, VOCAB_SIZE, (3, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=1e-5)
        assert hf(idx, labels=idx).loss.item() == pytest.approx(ours(idx[:, :-1], idx[:, 1:])[1].item(), abs=1e-5)
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()   # tied, as trained
    assert sorted(p.name for p in hf_dir.iterdir()) == ["config.json", "generation_config.json", "merges.txt",
                                                       "model.safetensors", "special_tokens_map.json",
                                                       "tokenizer.json", "tokenizer_config.json", "vocab.json"]
    # and back: our reader needs no transformers and gives the same model
    back = export_hf.load_hf_dir(hf_dir)
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_export_hf_refuses_an_existing_directory(run, hf_dir, capsys):
    assert webtext(["export-hf", "--ckpt", str(run / "ckpt.pt"), "--out", str(hf_dir)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and err.count("\n") == 1


def test_init_from_starts_training_from_the_hf_directory(shards, run, hf_dir, tmp_path):
    out = tmp_path / "finetune"
    # the preset says n_embd 64; the directory's config.json (n_embd 32) decides the shape
    assert train.main(["--config", "tiny", "--batch-size", "4", "--quiet", "--data", str(shards), "--out", str(out),
                       "--init-from", str(hf_dir), "--max-steps", "2", "--eval-interval", "1"]) == 0
    start = read_log(out / "log.jsonl")[0]
    trained = read_log(run / "log.jsonl")[-1]
    assert start["step"] == 0 and start["val_loss"] == pytest.approx(trained["val_loss"], abs=1e-4)
    fresh = tmp_path / "fresh"
    assert train.main([*TINY, "--data", str(shards), "--out", str(fresh), "--max-steps", "1"]) == 0
    assert read_log(fresh / "log.jsonl")[0]["val_loss"] > start["val_loss"] + 0.5
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["config"]["n_embd"] == 32 and ckpt["config"]["block_size"] == 32


def test_init_from_a_directory_without_config_is_one_line(shards, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train.main([*TINY, "--data", str(shards), "--out", str(tmp_path / "o"), "--init-from",
                       str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and err.count("\n") == 1


def test_tensorboard_events_beside_the_log(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(run.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run))
    acc.Reload()
    log = read_log(run / "log.jsonl")
    assert [e.step for e in acc.Scalars("train/loss")] == [r["step"] for r in log if r["loss"] is not None]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in log if r["loss"]])
    assert [e.step for e in acc.Scalars("val/loss")] == [r["step"] for r in log if r.get("val_loss") is not None]


def test_wandb_without_the_package_is_one_line(shards, tmp_path, capsys):
    try:
        import wandb  # noqa: F401
        pytest.skip("wandb is installed")
    except ImportError:
        pass
    assert train.main([*TINY, "--data", str(shards), "--out", str(tmp_path / "o"), "--max-steps", "1",
                       "--wandb"]) == 2
    assert "pip install wandb" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ sample
def test_sample_stop_at_eot_ends_at_the_first_generated_eot():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32)).eval()
    with torch.no_grad():   # every position: EOT has logit 12, the rest ~0: p(EOT) ~ 0.76 per token
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[EOT] = 0
        model.transformer.wte.weight[EOT, 0] = 12.0
    full = generate_text(model, "Hello", 40, temperature=1.0, top_k=0, seed=3, num_samples=4)
    stopped = generate_text(model, "Hello", 40, temperature=1.0, top_k=0, seed=3, num_samples=4, stop_at_eot=True)
    assert all("<|endoftext|>" in f for f in full)
    assert stopped == [f.split("<|endoftext|>")[0] for f in full]
    assert all(s.startswith("Hello") for s in stopped)


# ------------------------------------------------------------------------------------------------ eval
def direct_nats(model, tokens, T):
    """Reference: consecutive windows of T predictions, summed token by token with the model's own loss."""
    nats, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(tokens) - 1, T):
            w = torch.tensor(tokens[s:s + T + 1], dtype=torch.long)[None]
            _, loss = model(w[:, :-1], w[:, 1:])
            nats += loss.item() * (w.size(1) - 1)
            n += w.size(1) - 1
    return nats, n


def test_eval_on_a_text_file_matches_a_direct_computation(run, tmp_path, capsys):
    text = pydoc_data.topics.topics["assert"] + "\nCafé — naïve façade.\n"
    path = tmp_path / "test.txt"
    path.write_text(text, encoding="utf-8")
    assert webtext(["eval", "--ckpt", str(run / "ckpt.pt"), "--text", str(path), "--json", str(tmp_path / "e.json"),
                    "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "e.json").read_text())["lm"]
    model = load_model(run / "ckpt.pt")
    tokens = [EOT] + get_encoding().encode_ordinary(text)
    nats, n = direct_nats(model, tokens, 32)
    assert report["tokens"] == n == len(tokens) - 1
    assert report["bytes"] == len(text.encode("utf-8"))       # every predicted token's bytes, EOT none
    assert report["loss"] == pytest.approx(nats / n, rel=1e-5)
    assert report["bits_per_byte"] == pytest.approx(nats / math.log(2) / len(text.encode()), rel=1e-5)
    assert f"perplexity {math.exp(nats / n):.2f}" in out and "bits per byte" in out and "tokens/s" in out


def test_eval_on_the_val_split_with_cloze(run, shards, hf_dir, capsys):
    assert webtext(["eval", "--ckpt", str(run / "ckpt.pt"), "--data", str(shards), "--cloze", "50"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "eval.json").read_text())
    assert report["cloze"]["examples"] == 50 and 0 <= report["cloze"]["accuracy"] <= 1
    lines = [line for line in out.splitlines() if line.startswith("perplexity ")]
    assert len(lines) == 2 and "(cloze last word)" in lines[1]
    # the exported directory evaluates to the same numbers
    assert webtext(["eval", "--ckpt", str(hf_dir), "--data", str(shards), "--cloze", "50"]) == 0
    again = json.loads((hf_dir / "eval.json").read_text())
    assert again["lm"]["loss"] == pytest.approx(report["lm"]["loss"], rel=1e-6)
    assert again["cloze"] == report["cloze"]


def test_cloze_examples_are_deterministic_last_words():
    docs = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:20]]
    a = ev.cloze_examples(iter(docs), 64, 40)
    assert a == ev.cloze_examples(iter(docs), 64, 40) and len(a) == 40
    text = "\n".join(docs)
    for context, target in a:
        word = decode(target)
        assert word.startswith(" ") and word[1:].isalpha()
        assert len(context) + len(target) - 1 <= 64 and len(context) >= 32   # one forward pass of <= block_size
        assert decode(context + target) in text   # a real passage, the word right where the text has it


class Fixed(torch.nn.Module):
    """A stand-in LM: uniform logits, or an oracle that knows each example's target tokens."""

    def __init__(self, answers=None):
        super().__init__()
        self.config = GPTConfig(block_size=64)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.answers = answers or {}

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, VOCAB_SIZE)
        for b, row in enumerate(idx.tolist()):
            for pos in range(len(row)):
                nxt = self.answers.get(tuple(row[:pos + 1]))
                if nxt is not None:
                    logits[b, pos, nxt] = 30.0
        return logits, None


def test_cloze_scoring_oracle_and_uniform():
    docs = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:5]]
    examples = ev.cloze_examples(iter(docs), 64, 12)
    answers = {}
    for context, target in examples:
        for i, t in enumerate(target):
            answers[tuple(context + target[:i])] = t
    oracle = ev.score_cloze(Fixed(answers), examples, batch_size=5)
    assert oracle["accuracy"] == 1.0 and oracle["perplexity"] == pytest.approx(1.0, abs=1e-6)
    uniform = ev.score_cloze(Fixed(), examples, batch_size=5)
    mean_len = np.mean([len(t) for _, t in examples])
    assert uniform["accuracy"] == 0.0
    assert uniform["perplexity"] == pytest.approx(VOCAB_SIZE ** mean_len, rel=1e-4)   # exp(mean len * ln V)


def test_eval_user_mistakes(run, tmp_path, capsys):
    for argv, says in [(["--ckpt", str(tmp_path / "no.pt"), "--text", str(tmp_path)], "does not exist"),
                       (["--ckpt", str(run / "ckpt.pt"), "--text", str(tmp_path / "none.txt")], "no such file"),
                       (["--ckpt", str(run / "ckpt.pt"), "--data", str(tmp_path)], "no manifest.json")]:
        assert webtext(["eval", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err


def test_sample_reads_an_hf_directory_like_its_checkpoint(run, hf_dir, capsys):
    from train import sample
    argv = ["--prompt", "The", "--max-new-tokens", "8", "--seed", "5", "--stop-at-eot"]
    assert sample.main(["--ckpt", str(run / "ckpt.pt"), *argv]) == 0
    from_ckpt = capsys.readouterr().out
    assert sample.main(["--ckpt", str(hf_dir), *argv]) == 0
    assert capsys.readouterr().out == from_ckpt and from_ckpt.startswith("The")
