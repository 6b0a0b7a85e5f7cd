"""Training throughput of the webtext GPT-2: tokens/s, step time and MFU.

    python bench/train_speed.py                         # CUDA: gpt2 124M, 16x1024, bf16, compiled, vocab 50304
    python bench/train_speed.py --config gpt2-medium --batch-size 8 --no-compile
    python bench/train_speed.py --device cpu            # runs anywhere: the tiny config on CPU

The step is the trainer's (train.train): bf16 autocast, TF32, fused AdamW with decay on matrices only, grad
clipping, flash SDPA, optional torch.compile. Tokens are synthetic (uniform random ids), so no shards are needed
and data loading is not measured. Warmup steps (compilation, allocator, cuDNN autotuning) are excluded; the timed
steps are bracketed by torch.cuda.synchronize(). MFU = FLOPs per token (6N + 12·L·C·T) x tokens/s / peak dense
bf16 FLOP/s of the device (H100 SXM/H200 989, H100 PCIe 756, A100 312 TFLOP/s; not reported elsewhere).
"""

import argparse
import contextlib
import sys
import time
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/pipeline.py would shadow the pipeline package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from train.config import PRESETS, TrainConfig  # noqa: E402
from train.model import GPT, peak_flops  # noqa: E402
from train.train import keep_freed_memory, make_optimizer  # noqa: E402
from train.device import use_cuda  # noqa: E402
from core.settings import UsageError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--config", choices=tuple(PRESETS), default=None, help="default gpt2 on CUDA, tiny on CPU")
    p.add_argument("--batch-size", type=int, default=None, help="micro-batch; default 16 on CUDA, 8 on CPU")
    p.add_argument("--block-size", type=int, default=None, help="default: the config's (1024 for gpt2)")
    p.add_argument("--vocab-size", type=int, default=50304, help="50304 = 50257 padded to a multiple of 64")
    p.add_argument("--steps", type=int, default=None, help="timed steps; default 20 on CUDA, 10 on CPU")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    args = p.parse_args(argv)
    try:
        device = torch.device("cuda" if use_cuda(args.device) else "cpu")
    except UsageError as e:
        p.error(str(e))
    on_gpu = device.type == "cuda"
    name = args.config or ("gpt2" if on_gpu else "tiny")
    overrides = {"vocab_size": args.vocab_size, "compile": on_gpu if args.compile is None else args.compile}
    if args.block_size:
        overrides["block_size"] = args.block_size
    cfg = TrainConfig(**dict(PRESETS[name], **overrides))
    B, T = args.batch_size or (16 if on_gpu else 8), cfg.block_size
    steps = args.steps or (20 if on_gpu else 10)

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if not on_gpu:
        keep_freed_memory()
    model = GPT(cfg.model_config()).to(device)
    optimizer = make_optimizer(model, cfg, device.type)
    fwd = torch.compile(model) if cfg.compile else model
    use_bf16 = on_gpu and torch.cuda.is_bf16_supported()
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 50257, (B, T), device=device, generator=gen)
    y = torch.randint(0, 50257, (B, T), device=device, generator=gen)

    def step():
        with autocast():
            _, loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    device_name = torch.cuda.get_device_name(device) if on_gpu else "CPU (no GPU found)" if not torch.cuda.is_available() else "CPU"
    print(f"device: {device_name} | config {name}: {model.num_params() / 1e6:.1f}M params (vocab {cfg.vocab_size}),"
          f" batch {B}x{T}, {'bf16' if use_bf16 else 'fp32'}, compile {'on' if cfg.compile else 'off'}")
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    print(f"warmup: {args.warmup} steps in {time.perf_counter() - t0:.1f} s (not timed)")

    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if on_gpu:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    tokens_per_s = B * T / dt
    peak = peak_flops(device_name) if on_gpu else None
    mfu = f"{model.flops_per_token(T) * tokens_per_s / peak:.1%}" if peak else "n/a (peak FLOP/s of this device unknown)"
    print(f"step time: {dt * 1000:.1f} ms | tokens/s: {tokens_per_s:,.0f} | MFU: {mfu} | loss {loss.item():.3f}")
    if on_gpu:
        print(f"peak memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
