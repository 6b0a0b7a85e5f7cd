"""Checks before the first step, so a run that cannot work says so at once instead of minutes (or an OOM kill) later.

- The run directory: OUT's ckpt.pt / log.jsonl belong to an earlier run; starting over needs --overwrite, continuing
  it --resume. Nothing else in OUT is ever touched.
- Memory: an estimate of what one micro-batch needs (weights, gradients and AdamW state at 16 bytes a parameter;
  saved activations per layer, ~34 values of width d per token (Korthikanti et al. 2022, with SDPA's fused
  attention); logits and their gradients, ~4 fp32 copies of B*T*vocab) against the device's memory: above the
  device's total it is an error, above what is free now a warning.
- The data: warnings with numbers for a val split that gives no or overlapping val windows and for a step larger
  than the train split.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from core.settings import UsageError
from train.config import TrainConfig

GiB = 2**30


def check_run_dir(out_dir: Path, names: tuple, resume: bool, overwrite: bool) -> list[Path]:
    """The earlier run's files that this one will replace (for --overwrite), or UsageError."""
    found = [out_dir / n for n in names if (out_dir / n).exists()]
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite starts it over: give one of them")
    if found and not resume and not overwrite:
        raise UsageError(f"{out_dir} holds a training run ({', '.join(p.name for p in found)}); --resume continues "
                         "it, --overwrite starts over (replacing those files), or give another --out")
    return found if overwrite else []


def micro_batch_bytes(cfg: TrainConfig, num_params: int, bf16: bool) -> int:
    act = 2 if bf16 else 4
    tokens = cfg.batch_size * cfg.block_size
    layers = cfg.n_layer * 17 * act * tokens * cfg.n_embd   # 34 bytes at 16 bits
    logits = 4 * 4 * tokens * cfg.vocab_size   # logits, log-softmax, their gradients (measured on CPU)
    return 16 * num_params + layers + logits


def device_memory(device: torch.device) -> tuple[int, int] | None:
    """(free, total) bytes of the device, or None where unknown."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        kib = lambda key: int(meminfo[key].split()[0]) * 1024  # noqa: E731
        return kib("MemAvailable"), kib("MemTotal")
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        return (pages * os.sysconf("SC_PAGE_SIZE"),) * 2 if pages > 0 else None


def check_memory(cfg: TrainConfig, num_params: int, device: torch.device, bf16: bool) -> str | None:
    """A warning line, or None; UsageError when one micro-batch cannot fit in the device at all."""
    need = micro_batch_bytes(cfg, num_params, bf16)
    memory = device_memory(device)
    if memory is None:
        return None
    free, total = memory
    what = (f"a micro-batch of {cfg.batch_size}x{cfg.block_size} on this {cfg.n_layer}-layer, {num_params / 1e6:.0f}M-"
            f"parameter model needs ~{need / GiB:,.1f} GiB")
    if need > total:
        raise UsageError(f"{what}, more than the {device.type} has ({total / GiB:,.1f} GiB): lower --batch-size "
                         "(gradient accumulation keeps --tokens-per-step) or --block-size")
    if need > free:
        return f"{what}, more than the {free / GiB:,.1f} GiB free now; it may run out of memory"
    return None


def data_warnings(cfg: TrainConfig, train_tokens: int, val, val_tokens: int, tokens_per_step: int,
                  world_size: int) -> list[str]:
    warnings = []
    if cfg.eval_interval and val is not None and len(val) == 0:
        why = ("the val split is empty" if val_tokens == 0 else
               f"no val shard holds a window of block_size+1 = {cfg.block_size + 1} tokens ({val_tokens:,} tokens)")
        warnings.append(f"{why}: no val loss will be logged (raise shards.val_fraction in the pipeline config)")
    elif cfg.eval_interval and val is not None:
        windows = cfg.val_batches * cfg.batch_size * world_size
        if val.data.num_tokens < windows * (cfg.block_size + 1):
            warnings.append(f"the val split has {val.data.num_tokens:,} tokens, fewer than the {windows} val windows "
                            f"of {cfg.block_size + 1} cover ({windows * (cfg.block_size + 1):,}): they overlap, "
                            "so val loss measures less text than it seems")
    if tokens_per_step > train_tokens:
        warnings.append(f"one step reads {tokens_per_step:,} tokens, more than the whole train split "
                        f"({train_tokens:,}): each step sees the corpus ~{tokens_per_step / train_tokens:.1f} times")
    return warnings
