"""webtext export-hf: a checkpoint as a Hugging Face GPT-2 directory, and back.

    webtext export-hf --ckpt OUT/ckpt.pt --out HF_DIR
    webtext train --init-from HF_DIR --data DATA --out RUN      (fine-tune from such a directory, local files only)

HF_DIR is a complete Hugging Face model directory: config.json (GPT2Config), model.safetensors (pytorch_model.bin
without safetensors), generation_config.json and GPT-2's tokenizer (tokenizer.json, vocab.json, merges.txt,
tokenizer_config.json, special_tokens_map.json; built offline from the vocabulary webtext tokenizes with, see
train/hf_tokenizer.py), so `AutoTokenizer.from_pretrained(HF_DIR)` and `pipeline("text-generation", model=HF_DIR)`
work offline and give tiktoken's token ids. `GPT2LMHeadModel.from_pretrained(HF_DIR)` has logits identical to ours:
the parameter names are GPT-2's own; only the four Conv1D weights per block are stored transposed ((in, out)
instead of nn.Linear's (out, in)), and lm_head is tied to wte, so it is not stored. Reading a directory back needs
no transformers: config.json and the weights are read directly, and nothing is ever downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from core import files
from core.settings import UsageError
from train.hf_tokenizer import FILES as TOKENIZER_FILES, write_tokenizer
from core.tokenizer import EOT
from train.model import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
OUR_FILES = {"config.json", "generation_config.json", *WEIGHTS, *TOKENIZER_FILES}   # what export() writes


def hf_config(cfg: GPTConfig) -> dict:
    """GPT2Config fields for our model (dropout as trained; GPT-2's tanh GELU is "gelu_new")."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "tie_word_embeddings": True,
        "bos_token_id": EOT, "eos_token_id": EOT, "use_cache": True,
    }


def to_hf_state(model: GPT) -> dict:
    """Our state dict in HF's layout: Conv1D weights transposed, the tied lm_head left out."""
    return {k: (v.t() if k.endswith(CONV1D) else v).contiguous() for k, v in model.state_dict().items()
            if k != "lm_head.weight"}


def export(ckpt_path: str | Path, out: str | Path) -> dict:
    from train.checkpoint import load_model

    out = Path(out)
    model = load_model(ckpt_path, "cpu")
    with files.replacing_dir(out) as tmp:   # built aside and renamed: OUT is absent or complete
        tmp = Path(tmp)
        state = to_hf_state(model)
        try:
            from safetensors.torch import save_file
            save_file(state, str(tmp / WEIGHTS[0]), metadata={"format": "pt"})
        except ImportError:  # transformers reads this too (torch.load with weights_only)
            torch.save(state, tmp / WEIGHTS[1])
        (tmp / "config.json").write_text(json.dumps(hf_config(model.config), indent=2) + "\n")
        # pad = eos, as GPT-2 has no pad token: generate() then needs no per-call pad_token_id
        (tmp / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": EOT, "eos_token_id": EOT, "pad_token_id": EOT}, indent=2) + "\n")
        write_tokenizer(tmp, model.config.block_size)
    return hf_config(model.config)


# ------------------------------------------------------------------------------------------------ reading
def read_hf_config(hf_dir: str | Path) -> GPTConfig:
    """Our GPTConfig from a GPT-2 config.json; refuses what our model cannot represent."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise UsageError(f"{hf_dir}: no config.json; give a directory written by `webtext export-hf` or "
                         "`save_pretrained` of a GPT-2 model")
    try:
        c = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON ({e})") from None
    if c.get("model_type") != "gpt2":
        raise UsageError(f"{path}: model_type {c.get('model_type')!r}, only gpt2 is supported")
    different = [f"{k}={c.get(k)!r}" for k, want in (("activation_function", "gelu_new"),
                                                     ("tie_word_embeddings", True),
                                                     ("scale_attn_by_inverse_layer_idx", False),
                                                     ("reorder_and_upcast_attn", False))
                 if c.get(k, want) != want]
    if c.get("n_inner") not in (None, 4 * c["n_embd"]) or abs(c.get("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
        different.append("n_inner/layer_norm_epsilon")
    if different:
        raise UsageError(f"{path}: {', '.join(different)} differs from the GPT-2 architecture webtext trains")
    return GPTConfig(block_size=c["n_positions"], vocab_size=c["vocab_size"], n_layer=c["n_layer"],
                     n_head=c["n_head"], n_embd=c["n_embd"], dropout=0.0)


def read_hf_state(hf_dir: str | Path) -> dict:
    """The directory's weights in our layout (nn.Linear orientation, `transformer.` prefix, lm_head tied)."""
    hf_dir = Path(hf_dir)
    if (hf_dir / WEIGHTS[0]).is_file():
        from safetensors.torch import load_file
        state = load_file(str(hf_dir / WEIGHTS[0]))
    elif (hf_dir / WEIGHTS[1]).is_file():
        state = torch.load(hf_dir / WEIGHTS[1], map_location="cpu", weights_only=True)
    else:
        raise UsageError(f"{hf_dir}: no {' or '.join(WEIGHTS)} (sharded checkpoints are not supported)")
    out = {}
    for k, v in state.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers of older transformers
            continue
        if not k.startswith(("transformer.", "lm_head.")):  # saved from GPT2Model: no prefix
            k = "transformer." + k
        out[k] = v.t() if k.endswith(CONV1D) else v
    out.setdefault("lm_head.weight", out.get("transformer.wte.weight"))
    return out


def load_weights(model: GPT, hf_dir: str | Path) -> None:
    state = read_hf_state(hf_dir)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise UsageError(f"{hf_dir}: weights do not fit the model its config.json describes ({first[:200]})") from None


def load_hf_dir(hf_dir: str | Path, device="cpu") -> GPT:
    model = GPT(read_hf_config(hf_dir))
    load_weights(model, hf_dir)
    return model.to(device).eval()


def load_any(path: str | Path, device="cpu") -> GPT:
    """A `webtext train` checkpoint file or an HF GPT-2 directory, ready for inference."""
    from train.checkpoint import load_model

    path = Path(path)
    if path.is_dir():
        return load_hf_dir(path, device)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    return load_model(path, device)


# ------------------------------------------------------------------------------------------------ entry point
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="webtext export-hf", description="Write a checkpoint as a Hugging Face GPT-2 directory.")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `webtext train` (OUT/ckpt.pt)")
    p.add_argument("--out", required=True, help="a new directory (config.json, model.safetensors, tokenizer files)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export-hf directory in --out (a folder with other files is refused)")
    try:
        args = p.parse_args(argv)
        out = Path(args.out)
        if not Path(args.ckpt).is_file():
            raise UsageError(f"checkpoint {args.ckpt} does not exist")
        replace = False
        if out.exists() and not (out.is_dir() and not any(out.iterdir())):
            if not args.overwrite:
                raise UsageError(f"--out {out} already exists; pass --overwrite to replace an earlier export there, "
                                 "or give a new directory")
            if not out.is_dir() or any(not f.is_file() or f.name not in OUR_FILES for f in out.iterdir()):
                raise UsageError(f"--out {out} holds files `webtext export-hf` does not write; --overwrite replaces "
                                 "only an earlier export: give a new directory")
            replace = True
        if not out.absolute().parent.is_dir():
            raise UsageError(f"--out {out}: directory {out.absolute().parent} does not exist; create it first")
        t0 = time.perf_counter()
        if not replace:
            cfg = export(args.ckpt, out)
        else:                     # moved aside, and removed only once the new export is in place
            with files.set_aside(out):
                cfg = export(args.ckpt, out)
        seconds = time.perf_counter() - t0
    except UsageError as e:
        print(f"webtext export-hf: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"export-hf: wrote {out} ({cfg['n_layer']} layers, {cfg['n_embd']} wide, vocab {cfg['vocab_size']}; "
          f"{size / 1e6:.1f} MB in {seconds:.2f} s, {size / 1e6 / max(seconds, 1e-9):.0f} MB/s); load it with "
          f"GPT2LMHeadModel.from_pretrained({str(out)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
