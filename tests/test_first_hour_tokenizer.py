"""#19 item 1: `webtext export-hf` writes a complete HF model directory. AutoTokenizer and pipeline("text-generation")
load it offline, the tokenizer's ids are tiktoken's (webtext's offline encoding) on real pages and edge strings,
and generation through pipeline() continues the prompt with our model's own greedy tokens. `webtext.tokenizer()`
is the offline tokenizer."""
import json
import os

import pytest
import torch

import webtext
from core.tokenizer import EOT, get_encoding
from test_data_loader import write_prose_shards
from train import train

os.environ["HF_HUB_OFFLINE"] = "1"         # nothing may come from the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

EDGE = ["", " ", "Hello world", "  leading spaces", "trailing spaces   ", "tabs\tand\n\nnewlines\r\n\u3000",
        "a" * 3000, " " * 257, "\n" * 40 + "x", "héllo wörld, naïve café — “quotes” ‘single’ …",
        "日本語のテキスト 中文 한국어", "emoji 🤖🎉👩‍👩‍👧 and flags 🇩🇪", "\u200b\u200dzero\ufeffwidth",
        "\x00\x01\x7f control",
        "don't won't it's we've I'm you'll he'd", "3.14159 1,000,000 2026-12-05 0x1F",
        "text<|endoftext|>more", "<|endoftext|>", "<|endoftext|><|endoftext|>", "< |endoftext| >",
        "def f(x):\n    return x  # code\n", "   \n   \n", "ǅ ß ﬁ İ ı"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = write_prose_shards(tmp_path_factory.mktemp("shards"), train_shards=1)
        run = tmp_path_factory.mktemp("run")
        assert train.main(["--config", "tiny", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                           "--block-size", "32", "--batch-size", "2", "--max-steps", "3", "--eval-interval", "0",
                           "--quiet", "--no-tensorboard", "--data", str(data), "--out", str(run)]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="module")
def hf_dir(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "model"
    assert webtext.main(["export-hf", "--ckpt", str(run / "ckpt.pt"), "--out", str(out)]) == 0
    return out


def real_texts(corpus_dir):
    pages = sorted((corpus_dir / "pages").glob("*.html"))[:4]
    return [p.read_bytes().decode("utf-8", errors="replace") for p in pages]


def test_directory_has_every_tokenizer_file(hf_dir):
    names = {p.name for p in hf_dir.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "vocab.json", "merges.txt",
            "tokenizer_config.json", "special_tokens_map.json"} <= names
    vocab = json.loads((hf_dir / "vocab.json").read_text())
    merges = (hf_dir / "merges.txt").read_text().splitlines()
    assert len(vocab) == 50257 and vocab["<|endoftext|>"] == EOT
    assert merges[0] == "#version: 0.2" and len(merges) == 50001
    assert merges[1:3] == ["Ġ t", "Ġ a"] and merges[-1] == "Ġg azed"   # GPT-2's own first and last merges
    specials = json.loads((hf_dir / "special_tokens_map.json").read_text())
    assert specials == {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    assert json.loads((hf_dir / "generation_config.json").read_text())["eos_token_id"] == EOT


def assert_same_ids(tok, texts):
    enc = get_encoding()
    for text in texts:
        ordinary = enc.encode_ordinary(text)   # how webtext tokenizes a document: special-token text stays text
        assert tok(text, split_special_tokens=True)["input_ids"] == ordinary, text[:80]
        assert tok(text)["input_ids"] == enc.encode(text, allowed_special="all"), text[:80]   # HF's default
        assert tok.decode(ordinary) == enc.decode(ordinary), text[:80]


@pytest.fixture(scope="module")
def tok(hf_dir):
    return transformers.AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)


def test_auto_tokenizer_ids_equal_tiktoken_on_edge_strings(tok):
    assert len(tok) == 50257 and tok.eos_token_id == tok.bos_token_id == tok.unk_token_id == EOT
    assert_same_ids(tok, EDGE)
    assert tok("<|endoftext|>")["input_ids"] == [EOT] and tok.decode([EOT]) == "<|endoftext|>"


def test_auto_tokenizer_ids_equal_tiktoken_on_real_pages(tok, corpus):
    texts = real_texts(corpus)
    assert len(texts) == 4 and sum(map(len, texts)) > 50_000
    assert_same_ids(tok, texts)


def test_text_generation_pipeline_continues_the_prompt_with_our_greedy_tokens(hf_dir):
    from train.export_hf import load_hf_dir
    generate = transformers.pipeline("text-generation", model=str(hf_dir), device="cpu")
    prompt = "The history of the"
    got = generate(prompt, max_new_tokens=8, do_sample=False)[0]["generated_text"]
    ours, enc = load_hf_dir(hf_dir), get_encoding()
    ids = enc.encode_ordinary(prompt)
    with torch.no_grad():
        for _ in range(8):
            logits = ours(torch.tensor([ids]))[0]
            nxt = int(logits[0, -1].argmax())
            if nxt == EOT:
                break
            ids.append(nxt)
    assert got == enc.decode(ids) and len(got) > len(prompt)


def test_webtext_tokenizer_is_the_offline_encoding():
    enc = webtext.tokenizer()
    assert enc is get_encoding() and enc.n_vocab == 50257 and enc.eot_token == EOT
    assert enc.decode(enc.encode_ordinary("Hello world")) == "Hello world"


def test_export_hf_overwrite_replaces_an_earlier_export_only(run, tmp_path, capsys):
    """#19 item 8: the --out/--overwrite rule of every command that writes."""
    out, ckpt = tmp_path / "hf", str(run / "ckpt.pt")
    assert webtext.main(["export-hf", "--ckpt", ckpt, "--out", str(out)]) == 0
    assert webtext.main(["export-hf", "--ckpt", ckpt, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (out / "vocab.json").write_text("{}")   # stale: the export over it must be whole again
    assert webtext.main(["export-hf", "--ckpt", ckpt, "--out", str(out), "--overwrite"]) == 0   # today: unknown
    assert len(json.loads((out / "vocab.json").read_text())) == 50257
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]   # nothing left aside
    (out / "README.md").write_text("my model card")   # a file export-hf does not write: not its folder any more
    assert webtext.main(["export-hf", "--ckpt", ckpt, "--out", str(out), "--overwrite"]) == 2
    assert "does not write" in capsys.readouterr().err and (out / "README.md").read_text() == "my model card"
