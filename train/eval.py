"""webtext eval: loss, perplexity, bits per byte, and a LAMBADA-style last-word cloze.

    webtext eval --ckpt OUT/ckpt.pt --data DATA [--split val] [--max-tokens N] [--json FILE]
    webtext eval --ckpt OUT/ckpt.pt --text FILE [--cloze 500] [--batch-size 8] [--device auto]

--ckpt is a `webtext train` checkpoint or a directory written by `webtext export-hf`.

Language modelling: the token stream (a split's shards, documents back to back, or FILE encoded after one EOT) is
cut into consecutive windows of block_size tokens; every token after the first is predicted once, from the tokens
before it in its window. loss = mean nats per predicted token, perplexity = exp(loss), bits per byte = total nats /
ln 2 / UTF-8 bytes of the predicted tokens (EOT counts 0 bytes), which compares across tokenizers.

Cloze (the way the GPT-2 paper scores LAMBADA): passages from held-out documents (the split's documents, or FILE)
whose target is the last word of a sentence (`... word.`), with the up-to-block_size tokens before it as context.
Built deterministically: every such word with >= 32 tokens before it and >= 64 tokens after the previous example,
in document order, at most --cloze examples. accuracy = the greedy prediction of every token of the word is right;
perplexity = exp(mean over examples of the word's total nats).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import files
from core.settings import UsageError
from core.shard_format import read_manifest, shard_paths, shard_tokens
from core.token_bytes import vocab_table
from core.tokenizer import EOT, TokenizerUnavailable, get_encoding

CLOZE_MIN_CONTEXT = 32  # tokens before the target word
CLOZE_SPACING = 64  # tokens between two examples' targets: passages barely overlap
SENTENCE_END_WORD = re.compile(r"(?<= )([A-Za-z]+)(?=[.!?](?:[\s\"')\]]|$))")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="webtext eval", description="Evaluate a webtext GPT-2: loss, perplexity, bits/byte, cloze.")
    p.add_argument("--ckpt", required=True, help="checkpoint (OUT/ckpt.pt) or a `webtext export-hf` directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="shard directory: evaluate on one split (default val)")
    src.add_argument("--text", help="a UTF-8 text file to evaluate on")
    p.add_argument("--split", choices=("train", "val"), default="val")
    p.add_argument("--max-tokens", type=int, default=0, help="evaluate at most N tokens of the stream (0 = all)")
    p.add_argument("--cloze", type=int, default=500, help="at most N last-word cloze examples (0 = none)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", help="write the numbers here (default: eval.json beside the checkpoint)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


# ------------------------------------------------------------------------------------------------ language modelling
@torch.no_grad()
def stream_nll(model, streams, batch_size: int, max_tokens: int = 0) -> dict:
    """Sum of nats and count of predicted tokens/bytes over token streams (each a 1-D uint16 array)."""
    device = next(model.parameters()).device
    T = model.config.block_size
    _, toff = vocab_table()
    token_bytes = np.diff(toff)  # UTF-8 bytes of each token; EOT 0
    nats, tokens, nbytes, budget = 0.0, 0, 0, max_tokens or float("inf")
    t0 = time.perf_counter()
    for stream in streams:
        if budget <= 0:
            break
        n = int(min(len(stream) - 1, budget))  # predicted tokens of this stream
        if n <= 0:
            continue
        budget -= n
        full = n // T

        def run(starts, length):
            nonlocal nats, tokens, nbytes
            rows = np.stack([np.asarray(stream[s:s + length + 1], dtype=np.int64) for s in starts])
            batch = torch.from_numpy(rows).to(device)  # (B, L+1)
            logits, _ = model(batch[:, :-1])  # (B, L, V)
            nats += F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
            tokens += rows[:, 1:].size
            nbytes += int(token_bytes[rows[:, 1:]].sum())

        for i in range(0, full, batch_size):  # full windows of T predictions, batch_size at a time
            run(range(i * T, min(full, i + batch_size) * T, T), T)
        if n % T:  # the shorter remainder window
            run([full * T], n % T)
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "bytes": nbytes, "nats": nats, "seconds": seconds}


def lm_metrics(r: dict) -> dict:
    loss = r["nats"] / max(r["tokens"], 1)
    return {"tokens": r["tokens"], "bytes": r["bytes"], "loss": loss, "perplexity": math.exp(loss),
            "bits_per_byte": r["nats"] / math.log(2) / max(r["bytes"], 1),
            "tokens_per_s": r["tokens"] / max(r["seconds"], 1e-9)}


# ------------------------------------------------------------------------------------------------ cloze
def cloze_examples(docs, block_size: int, limit: int) -> list[tuple[list[int], list[int]]]:
    """(context tokens, target word tokens) pairs from documents' texts, deterministically (see module doc)."""
    enc = get_encoding()
    out = []
    for text in docs:
        if len(out) >= limit:
            break
        tokens = enc.encode_ordinary(text)
        # char offset where each token starts (a token can start mid-character: those never match a word start)
        starts, pos = {}, 0
        for i, t in enumerate(tokens):
            starts.setdefault(pos, i)
            pos += len(enc.decode_single_token_bytes(t))
        byte_of_char = np.cumsum([0] + [len(c.encode()) for c in text])  # char offset -> byte offset
        last = -CLOZE_SPACING
        for m in SENTENCE_END_WORD.finditer(text):
            i = starts.get(int(byte_of_char[m.start() - 1]))  # the token that begins with the space
            j = starts.get(int(byte_of_char[m.end()]))  # the token after the word
            if i is None or j is None or i < CLOZE_MIN_CONTEXT or i - last < CLOZE_SPACING:
                continue
            target = tokens[i:j]
            if enc.decode(target) != " " + m.group(1) or len(target) >= block_size:
                continue
            context = tokens[max(0, i - (block_size - len(target) + 1)):i]  # context + target[:-1] fits the block
            out.append((context, target))
            last = i
            if len(out) >= limit:
                break
    return out


@torch.no_grad()
def score_cloze(model, examples, batch_size: int) -> dict:
    """Teacher-forced scoring of each target word: its total nats and whether greedy decoding gets every token."""
    device = next(model.parameters()).device
    nll, correct = [], []
    for i in range(0, len(examples), batch_size):
        group = examples[i:i + batch_size]
        seqs = [c + t[:-1] for c, t in group]
        L = max(len(s) for s in seqs)
        batch = torch.zeros(len(seqs), L, dtype=torch.long)  # right padding: causal attention never sees it
        for b, s in enumerate(seqs):
            batch[b, :len(s)] = torch.tensor(s)
        logits, _ = model(batch.to(device))  # (B, L, V)
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for b, (c, t) in enumerate(group):
            at = torch.arange(len(c) - 1, len(c) - 1 + len(t))  # positions whose next token is a target token
            target = torch.tensor(t)
            nll.append(-logp[b, at, target].sum().item())
            correct.append(bool((logp[b, at].argmax(-1) == target).all()))
    n = len(nll)
    return {"examples": n, "correct": sum(correct), "accuracy": sum(correct) / n if n else 0.0,
            "perplexity": math.exp(sum(nll) / n) if n else float("nan")}


# ------------------------------------------------------------------------------------------------ entry point
def _source(args) -> tuple[list, list, str]:
    """(token streams, held-out document texts for the cloze, description)."""
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise UsageError(f"--text {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"--text {path} is not UTF-8 text ({e.reason})") from None
        tokens = np.array([EOT] + get_encoding().encode_ordinary(text), np.uint16)  # EOT: "a document starts"
        return [tokens], [text], f"{path}"
    data = Path(args.data)
    try:
        read_manifest(data)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    paths = shard_paths(data, args.split)
    if not paths:
        raise UsageError(f"{data} has no {args.split} shards")
    streams = [shard_tokens(p)[0] for p in paths]

    def docs():  # lazily: the cloze stops once it has enough examples
        from core.tokenizer import decode
        for tokens, offsets in (shard_tokens(p) for p in paths):
            for a, b in zip(offsets[:-1], offsets[1:]):
                yield decode(tokens[a:b - 1].tolist())

    return streams, docs(), f"{args.split} split of {data}"


def _eval(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.max_tokens < 0 or args.cloze < 0:
        raise UsageError("--batch-size must be >= 1, --max-tokens and --cloze >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device")
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    from train.export_hf import load_any

    if device == "cpu":
        from train.train import keep_freed_memory
        keep_freed_memory()  # (B, T, V) logits each batch: keep glibc from unmapping and re-faulting them
    model = load_any(args.ckpt, device)
    streams, docs, where = _source(args)
    lm = lm_metrics(stream_nll(model, streams, args.batch_size, args.max_tokens))
    examples = cloze_examples(docs, model.config.block_size, args.cloze) if args.cloze else []
    cloze = score_cloze(model, examples, args.batch_size)
    print(f"eval: {args.ckpt} on {where}: {lm['tokens']:,} tokens, {lm['bytes']:,} bytes, "
          f"{lm['tokens_per_s']:,.0f} tokens/s ({device})")
    print(f"loss {lm['loss']:.4f} nats/token")
    print(f"perplexity {lm['perplexity']:.2f}")
    print(f"bits per byte {lm['bits_per_byte']:.4f}")
    if cloze["examples"]:
        print(f"cloze: {cloze['examples']:,} last-word examples; accuracy {100 * cloze['accuracy']:.2f}% "
              f"({cloze['correct']}/{cloze['examples']})")
        print(f"perplexity {cloze['perplexity']:.2f} (cloze last word)")
    elif args.cloze:
        print("cloze: no example found (no sentence-final word with enough context)")
    out = Path(args.json) if args.json else Path(args.ckpt).parent / "eval.json" if Path(args.ckpt).is_file() \
        else Path(args.ckpt) / "eval.json"
    report = {"ckpt": str(args.ckpt), "source": where, "device": device, "block_size": model.config.block_size,
              "lm": lm, "cloze": cloze}
    files.write_atomic(out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _eval(argv)
    except (UsageError, TokenizerUnavailable) as e:
        print(f"webtext eval: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
