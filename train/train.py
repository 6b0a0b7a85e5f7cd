"""webtext train: GPT-2 on the pipeline's token shards.

    webtext train --config gpt2 --data DATA --out OUT [--max-steps N] [--device auto] [--resume] [--quiet] [--lr 3e-4 ...]
    torchrun --standalone --nproc_per_node 8 -m train.train --config gpt2 --data DATA --out OUT

One optimizer step = tokens_per_step tokens: micro-batches of batch_size x block_size per process, accumulated
(grad_accum = tokens_per_step / (batch_size * block_size * world_size)), gradients averaged over processes by DDP.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from train.checkpoint import CKPT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from core.progress import progress_bar
from core.settings import ArgumentParser, UsageError
from train.config import (MODEL_FIELDS, PRESETS, TrainConfig, add_config_flags, grad_accum_steps,
                          load_config, overrides_from_args, validate)
from train.device import use_cuda
from train.data import TrainLoader, ValSet
from train.model import GPT, peak_flops
from train.preflight import check_memory, check_run_dir, data_warnings
from train.report import LOG_NAME, PLOT_NAME, read_log, rewrite_log, write_plot
from train.tracking import Trackers, earlier_run_files
from train.tracking import add_flags as add_tracker_flags


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="webtext train", description="Train GPT-2 on webtext token shards.")
    p.add_argument("--config", default=None,
                   help=f"preset ({', '.join(PRESETS)}) or a .toml file; default gpt2 on a GPU, tiny on CPU, "
                        "or the checkpoint's with --resume")
    p.add_argument("--data", required=True, help="shard directory (with manifest.json)")
    p.add_argument("--out", required=True, help="run directory: ckpt.pt, log.jsonl, loss.png")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt exactly where it stopped")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUT that holds a run (its ckpt.pt, log.jsonl, loss.png are replaced; its "
                        "TensorBoard events and eval.json removed)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the sha256 of every shard at start (one read of the data; other checks stay)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--init-from", metavar="HF_DIR", help="start from a local Hugging Face GPT-2 directory "
                   "(`webtext export-hf` or save_pretrained); its config.json sets the model shape")
    add_config_flags(p)
    add_tracker_flags(p)
    return p


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr, cosine decay to min_lr at lr_decay_steps (default max_steps), then min_lr."""
    decay_steps = cfg.lr_decay_steps or cfg.max_steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= decay_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: GPT, cfg: TrainConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings (dim >= 2) only; fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied wte/lm_head matrix appears once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, LayerNorm gains
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                             fused=device_type == "cuda")


def setup_device(device_arg: str) -> tuple[torch.device, int, int]:
    """(device, rank, world_size); joins the process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    cuda = use_cuda(device_arg)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return torch.device("cuda" if cuda else "cpu"), 0, 1
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device, rank, world_size


def keep_freed_memory() -> None:
    """CPU only: stop glibc from returning every large freed block (logits are B*T*V floats) to the OS, which
    made each step page-fault its tensors back in; 2-4x faster small-model CPU training. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 2**31 - 1)  # M_MMAP_THRESHOLD: serve big blocks from the heap ...
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: ... and keep them there once freed
    except (OSError, AttributeError):
        pass


def _mean_over_ranks(x: torch.Tensor, world_size: int) -> float:
    if world_size > 1:  # SUM: gloo has no AVG
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= world_size
    return x.item()


@torch.no_grad()
def evaluate(model, val: ValSet, device, autocast, world_size: int) -> float:
    """Mean loss over the fixed val windows (dropout off), averaged over processes."""
    model.eval()
    total = torch.zeros((), device=device)
    for x, y in val.batches(device):
        with autocast():
            _, loss = model(x, y)
        total += loss.float()
    model.train()
    return _mean_over_ranks(total / len(val), world_size)


def default_config_name(device_arg: str) -> str:
    """Without --config: GPT-2 small where there is a GPU, the tiny model on CPU (a few hundred steps in minutes)."""
    return "gpt2" if use_cuda(device_arg) else "tiny"


def _resolve_config(args, overrides: dict, ckpt: dict | None) -> TrainConfig:
    if ckpt is None:
        return replace(load_config(args.config or default_config_name(args.device)), **overrides)
    saved = {f.name: ckpt["config"][f.name] for f in fields(TrainConfig) if f.name in ckpt["config"]}
    base = TrainConfig(**saved) if args.config is None else load_config(args.config)
    cfg = replace(base, **overrides)
    changed = [f"{k}={saved[k]} in the checkpoint but {getattr(cfg, k)} now" for k in MODEL_FIELDS
               if k in saved and k != "dropout" and saved[k] != getattr(cfg, k)]
    if changed:
        raise UsageError("cannot resume a different model: " + "; ".join(changed))
    return cfg


def _train(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    data_dir, out_dir = Path(args.data), Path(args.out)
    if not data_dir.is_dir():
        raise UsageError(f"data directory {data_dir} does not exist")
    if not (data_dir / "manifest.json").is_file():
        raise UsageError(f"no manifest.json in {data_dir}: point --data at the output of `webtext run`/`webtext demo`")
    ckpt_path = out_dir / CKPT_NAME
    replaced = check_run_dir(out_dir, (CKPT_NAME, LOG_NAME, PLOT_NAME), args.resume, args.overwrite)
    ckpt = None
    if args.resume:
        if not ckpt_path.is_file():
            raise UsageError(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = load_checkpoint(ckpt_path)
    cfg = _resolve_config(args, overrides_from_args(args), ckpt)
    if args.init_from and ckpt is None:  # the directory's model shape wins over the preset's
        from train.export_hf import read_hf_config
        cfg = replace(cfg, **dict(asdict(read_hf_config(args.init_from)), dropout=cfg.dropout))
    validate(cfg)

    device, rank, world_size = setup_device(args.device)
    ddp, master = world_size > 1, rank == 0
    accum = grad_accum_steps(cfg, world_size)
    if device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(cfg.seed + rank)  # different dropout masks per process
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left outside autocast
    torch.backends.cudnn.allow_tf32 = True
    use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext

    try:
        checks = dict(vocab_size=cfg.vocab_size, verify=not args.no_verify)
        loader = TrainLoader(data_dir, cfg.batch_size, cfg.block_size, sampling=cfg.sampling, seed=cfg.seed,
                             rank=rank, world_size=world_size, **checks)
        val = ValSet(data_dir, cfg.batch_size, cfg.block_size, cfg.val_batches, rank=rank, world_size=world_size,
                     **checks)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    tokens_per_step = cfg.batch_size * cfg.block_size * world_size * accum
    warnings = data_warnings(cfg, loader.data.num_tokens, val, val.data.split_tokens, tokens_per_step, world_size)
    if cfg.eval_interval == 0 or len(val) == 0:
        val = None

    model = GPT(cfg.model_config())
    memory_warning = check_memory(cfg, model.num_params(), device, use_bf16)
    if args.init_from and ckpt is None:
        from train.export_hf import load_weights
        load_weights(model, args.init_from)
    model = model.to(device)
    optimizer = make_optimizer(model, cfg, device.type)
    start_step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"])
        start_step = int(ckpt["step"])
        if len(ckpt["rng"]) == world_size:
            set_rng_state(ckpt["rng"][rank], device)
        else:  # another world size: data order still continues exactly, dropout masks cannot
            torch.manual_seed(cfg.seed + rank + start_step)
        del ckpt
    raw_model = model
    compiled = cfg.compile and device.type == "cuda"  # CPU: compile time would dwarf the small runs CPUs do
    if compiled:
        model = torch.compile(model)
    eval_model = model  # not the DDP wrapper: evaluation needs no gradient sync
    if ddp:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, plot_path = out_dir / LOG_NAME, out_dir / PLOT_NAME
    records = [r for r in read_log(log_path) if r["step"] <= start_step] if args.resume else []
    if master:
        rewrite_log(log_path, records)  # a fresh run starts a fresh log; a resumed one drops steps after the checkpoint
    log_file = open(log_path, "a") if master else None
    if master and args.overwrite:   # the earlier run's TensorBoard events and eval.json: one run on view
        for path in earlier_run_files(out_dir):
            path.unlink()
    trackers = Trackers(args, out_dir, asdict(cfg), start_step, master)
    flops_per_token = raw_model.flops_per_token()
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    title = f"{raw_model.num_params() / 1e6:.1f}M params, {tokens_per_step:,} tokens/step"

    def log(record: dict) -> None:
        if master:
            records.append(record)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            trackers.log(record)

    def checkpoint(step: int) -> None:
        states = [None] * world_size
        if ddp:
            dist.all_gather_object(states, rng_state(device))
        else:
            states = [rng_state(device)]
        if master:
            os.fsync(log_file.fileno())  # the log on disk reaches at least the checkpoint's step
            save_checkpoint(ckpt_path, {
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "tokens": step * tokens_per_step, "config": asdict(cfg), "rng": states,
                "loader": loader.state_dict(), "world_size": world_size,
            })

    quiet = args.quiet or not master
    if master:
        for line in warnings + ([memory_warning] if memory_warning else []):
            print(f"webtext train: warning: {line}", file=sys.stderr)
        if ckpt_path in replaced:  # --overwrite: the old checkpoint must not outlive the old log it matched
            ckpt_path.unlink()
    if not quiet:
        tqdm.write(
            f"webtext train: {title} | {device.type}{' bf16' if use_bf16 else ' fp32'}"
            f"{' compiled' if compiled else ''} | {world_size} process(es) x "
            f"{accum} micro-batch(es) of {cfg.batch_size}x{cfg.block_size} | train {loader.data.num_tokens:,} tokens"
            f", val {val.data.num_tokens if val else 0:,} tokens | steps {start_step}->{cfg.max_steps}"
        )
    if start_step >= cfg.max_steps:
        if not quiet:
            tqdm.write(f"webtext train: already at step {start_step} >= max_steps {cfg.max_steps}; nothing to do")
        return 0
    if start_step == 0 and val is not None:
        log({"step": 0, "loss": None, "lr": None, "tokens_per_s": None, "mfu": None,
             "val_loss": evaluate(eval_model, val, device, autocast, world_size)})

    pbar = progress_bar("train", total=cfg.max_steps, unit="step", quiet=quiet)   # plain lines in a pipe or log
    pbar.update(start_step)
    t_last, tokens_since = time.perf_counter(), 0
    for step in range(start_step, cfg.max_steps):
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(accum):
            x, y = loader.next_batch(device)
            # DDP all-reduces gradients only on the last micro-batch of the step
            sync = contextlib.nullcontext() if not ddp or micro == accum - 1 else model.no_sync()
            with sync:
                with autocast():
                    _, loss = model(x, y)
                (loss / accum).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done, tokens_since = step + 1, tokens_since + tokens_per_step
        last = done == cfg.max_steps
        do_eval = val is not None and (done % cfg.eval_interval == 0 or last)
        if done % cfg.log_interval == 0 or do_eval or last:
            loss_value = _mean_over_ranks(loss_sum / accum, world_size)  # .item() waits for the GPU
            tokens_per_s = tokens_since / (time.perf_counter() - t_last)
            record = {"step": done, "loss": loss_value, "lr": lr, "tokens_per_s": tokens_per_s,
                      "mfu": flops_per_token * tokens_per_s / (peak * world_size) if peak else None,
                      "grad_norm": grad_norm.item() if grad_norm is not None else None, "tokens": done * tokens_per_step}
            if do_eval:
                record["val_loss"] = evaluate(eval_model, val, device, autocast, world_size)
            log(record)
            pbar.set_postfix_str(f"loss={loss_value:.3f}" + (f", val={record['val_loss']:.3f}" if do_eval else ""))
            t_last, tokens_since = time.perf_counter(), 0  # evaluation time is not training throughput
        if done % cfg.ckpt_interval == 0 or last:
            checkpoint(done)
        if master and (do_eval or last):
            write_plot(records, plot_path, title)
        pbar.update(1)
    pbar.close()

    if not quiet:
        final = records[-1]
        val_text = f", val loss {final['val_loss']:.4f}" if final.get("val_loss") is not None else ""
        tqdm.write(f"webtext train: step {cfg.max_steps}, train loss {final['loss']:.4f}{val_text}; "
                   f"wrote {ckpt_path}, {log_path}, {plot_path}")
    if log_file:
        log_file.close()
    trackers.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `webtext train ARGS...`; returns the exit code (2 for a user mistake, with one line)."""
    try:
        return _train(argv)
    except UsageError as e:
        print(f"webtext train: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("webtext train: interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
