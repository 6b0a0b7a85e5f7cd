"""Checkpoints that let a run continue exactly: model, optimizer, step, every RNG, loader position, config.

Written atomically (temporary file, fsync, os.replace), so a crash mid-write leaves the previous checkpoint
intact. Everything in it is plain tensors, numbers, strings, lists and dicts, so `torch.load(weights_only=True)`
reads it (no pickled code).
"""

from __future__ import annotations

import random
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from core import files
from train.model import GPT, GPTConfig

CKPT_NAME = "ckpt.pt"


def rng_state(device: torch.device | None = None) -> dict:
    """This process's RNG states: python, numpy (as lists, not pickled arrays), torch CPU, and the CUDA generator of
    `device` (only that one: touching every GPU would create a context on each from every process)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device is not None and device.type == "cuda" else None,
    }


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: str | Path, state: dict) -> None:
    with files.replacing(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(ckpt_path: str | Path, device: str | torch.device = "cpu") -> GPT:
    ckpt = load_checkpoint(ckpt_path)
    cfg = GPTConfig(**{f.name: ckpt["config"][f.name] for f in fields(GPTConfig)})
    model = GPT(cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
