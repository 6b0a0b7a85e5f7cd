"""Which device a command runs on: `--device auto|cpu|cuda`, decided the same way by train, sample and the bench."""
from __future__ import annotations

import torch

from core.settings import UsageError


def use_cuda(device_arg: str) -> bool:
    """True for cuda, or for auto where torch sees a CUDA device; --device cuda without one is a UsageError."""
    if device_arg == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device")
    return device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
