"""webtext sample: continue a prompt with a trained checkpoint.

    webtext sample --ckpt OUT/ckpt.pt --prompt "The meaning of life is" [--max-new-tokens 100] [--temperature 0.8]
                   [--top-k 200] [--seed 1337] [--num-samples 1] [--device auto] [--stop-at-eot]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from core.settings import ArgumentParser, UsageError
from core.tokenizer import EOT, TokenizerUnavailable, decode, get_encoding
from train.checkpoint import load_model  # noqa: F401  (where callers have always found it)
from train.device import use_cuda
from train.model import GPT


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="webtext sample", description="Sample text from a trained webtext GPT-2 checkpoint.")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `webtext train` (OUT/ckpt.pt) or an "
                   "`export-hf` directory")
    p.add_argument("--prompt", default="", help="text to continue; empty starts a fresh document")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=200, help="sample among the k most likely tokens; 0 = all")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--stop-at-eot", action="store_true", help="end each sample at its first <|endoftext|>")
    return p


def generate_text(model: GPT, prompt: str, max_new_tokens: int, temperature: float = 0.8, top_k: int | None = 200,
                  seed: int = 1337, num_samples: int = 1, stop_at_eot: bool = False) -> list[str]:
    """num_samples continuations of prompt (prompt included), decoded with the GPT-2 tokenizer; with stop_at_eot
    each ends before its first generated EOT (generation stops once every sample has one)."""
    device = next(model.parameters()).device
    prompt_ids = get_encoding().encode_ordinary(prompt) or [EOT]  # EOT: "a new document starts here"
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([prompt_ids] * num_samples, dtype=torch.long, device=device)
    if stop_at_eot:  # in steps of 16 tokens: the same draws from `generator` as one call, so the same text
        out, left = idx, max_new_tokens
        while left > 0 and not (out[:, idx.size(1):] == EOT).any(dim=1).all():
            step = min(16, left)
            out, left = model.generate(out, step, temperature=temperature, top_k=top_k or None,
                                       generator=generator), left - step
    else:
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k or None, generator=generator)
    skip = 0 if prompt else 1  # do not print the EOT we started from
    rows = [row.tolist() for row in out]
    if stop_at_eot:
        rows = [r[:len(prompt_ids) + r[len(prompt_ids):].index(EOT)] if EOT in r[len(prompt_ids):] else r
                for r in rows]
    return [decode(r[skip:]) for r in rows]


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not Path(args.ckpt).exists():
            raise UsageError(f"checkpoint {args.ckpt} does not exist")
        if args.max_new_tokens < 0 or args.num_samples < 1:
            raise UsageError("--max-new-tokens must be >= 0 and --num-samples >= 1")
        device = "cuda" if use_cuda(args.device) else "cpu"
        from train.export_hf import load_any  # a checkpoint file or an `export-hf` directory
        model = load_any(args.ckpt, device)
        samples = generate_text(model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed,
                                args.num_samples, stop_at_eot=args.stop_at_eot)
    except (UsageError, TokenizerUnavailable) as e:
        print(f"webtext sample: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    for i, text in enumerate(samples):
        if len(samples) > 1:
            print(f"--- sample {i + 1}")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
