"""Training configuration: one flat dataclass, named presets, TOML files, and `--key value` overrides.

Resolution order: defaults (GPT-2 124M) <- preset or TOML file (`base = "preset"` in a TOML starts from a preset)
<- command-line flags. Every field is a flag: `lr` -> `--lr`, `batch_size` -> `--batch-size`, booleans as
`--compile/--no-compile`.
"""

import argparse
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from core.settings import UsageError, dataclass_from, read_toml
from train.model import MODEL_CONFIGS, GPTConfig


@dataclass
class TrainConfig:
    # model (GPT-2 124M by default)
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # width of the residual stream
    block_size: int = 1024  # context length in tokens
    vocab_size: int = 50257  # 50304 pads to a multiple of 64: same model, faster matmuls on GPUs
    dropout: float = 0.0  # dropout on attention and residual paths (GPT-2 pretraining: 0)
    # data
    sampling: str = "random"  # random: windows anywhere in the token stream (nanoGPT); document: start at a document
    # optimization: defaults follow llm.c's GPT-2 124M run on 10B tokens (~GPT-3 small's hyperparameters)
    batch_size: int = 16  # micro-batch per process, sequences of block_size tokens
    tokens_per_step: int = 524288  # 2**19 tokens per optimizer step; 0 = one micro-batch per process
    max_steps: int = 19073  # ~10B tokens at 2**19 tokens/step
    lr: float = 6e-4  # peak learning rate
    min_lr: float = 6e-5  # floor of the cosine decay
    warmup_steps: int = 715  # linear warmup
    lr_decay_steps: int = 0  # cosine reaches min_lr here; 0 = max_steps
    weight_decay: float = 0.1  # on matrices and embeddings only, not on biases and LayerNorm gains
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    # evaluation, logging, checkpoints (in optimizer steps)
    eval_interval: int = 250  # val loss every N steps (and at step 0 and the end); 0 = never
    val_batches: int = 20  # micro-batches per process in each val estimate (a fixed set of windows)
    log_interval: int = 10  # a log.jsonl line every N steps
    ckpt_interval: int = 1000  # checkpoint every N steps (and at the end)
    # system
    seed: int = 1337  # seeds the model init, the data order and dropout
    dtype: str = "auto"  # auto (bfloat16 on CUDA, float32 on CPU) | bfloat16 | float32
    compile: bool = True  # torch.compile the model (CUDA only; ignored on CPU)

    def model_config(self) -> GPTConfig:
        return GPTConfig(**{f.name: getattr(self, f.name) for f in fields(GPTConfig)})


MODEL_FIELDS = tuple(f.name for f in fields(GPTConfig))

# Presets: a model size plus a schedule that fits it. The paper's sizes share the 124M schedule except the
# learning rate (GPT-3 paper Table 2.1 for similar sizes).
PRESETS: dict[str, dict] = {
    "gpt2": dict(MODEL_CONFIGS["gpt2"]),
    "gpt2-medium": dict(MODEL_CONFIGS["gpt2-medium"], lr=3e-4, min_lr=3e-5),
    "gpt2-large": dict(MODEL_CONFIGS["gpt2-large"], lr=2.5e-4, min_lr=2.5e-5),
    "gpt2-xl": dict(MODEL_CONFIGS["gpt2-xl"], lr=2e-4, min_lr=2e-5),
    # a model a workstation (or a patient CPU) trains in hours on a demo-sized corpus
    "gpt2-mini": dict(
        MODEL_CONFIGS["gpt2-mini"], batch_size=32, tokens_per_step=32768, max_steps=5000, lr=1e-3, min_lr=1e-4,
        warmup_steps=100, eval_interval=250, ckpt_interval=500, dropout=0.1,
    ),
    # CI and smoke tests: seconds on a laptop CPU
    "tiny": dict(
        MODEL_CONFIGS["tiny"], batch_size=8, tokens_per_step=0, max_steps=300, lr=3e-3, min_lr=3e-4,
        warmup_steps=20, eval_interval=100, val_batches=4, log_interval=10, ckpt_interval=100, compile=False,
    ),
}


def _field_types() -> dict[str, type]:
    return typing.get_type_hints(TrainConfig)


def load_config(name_or_file: str) -> TrainConfig:
    """A preset name or a TOML file of flat `key = value` lines (optionally `base = "<preset>"`)."""
    if name_or_file in PRESETS:
        return TrainConfig(**PRESETS[name_or_file])
    path = Path(name_or_file)
    if path.suffix != ".toml":
        raise UsageError(f"unknown config {name_or_file!r}: use one of {', '.join(PRESETS)} or a .toml file")
    values = read_toml(str(path))
    base = values.pop("base", None)
    if base is not None and base not in PRESETS:
        raise UsageError(f"unknown base preset {base!r} in {path} (use one of {', '.join(PRESETS)})")
    return dataclass_from(TrainConfig, values, where=str(path), base=TrainConfig(**PRESETS.get(base, {})))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults are suppressed so only flags given on the command line override."""
    group = parser.add_argument_group("config overrides (any TrainConfig field)")
    for name, typ in _field_types().items():
        flag = "--" + name.replace("_", "-")
        default = getattr(TrainConfig, name)
        if typ is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"(default {default})")
        else:
            group.add_argument(flag, dest=name, type=typ, default=argparse.SUPPRESS, metavar=typ.__name__.upper(),
                               help=f"(default {default})")


def overrides_from_args(args: argparse.Namespace) -> dict:
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def validate(cfg: TrainConfig) -> None:
    if cfg.n_embd % cfg.n_head:
        raise UsageError(f"n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}")
    if cfg.vocab_size < 50257:
        raise UsageError(f"vocab_size {cfg.vocab_size} is smaller than GPT-2's 50257 tokens")
    if cfg.sampling not in ("random", "document"):
        raise UsageError(f"sampling must be 'random' or 'document', got {cfg.sampling!r}")
    if cfg.dtype not in ("auto", "bfloat16", "float32"):
        raise UsageError(f"dtype must be auto, bfloat16 or float32, got {cfg.dtype!r}")
    for key in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_steps", "log_interval",
                "ckpt_interval"):
        if getattr(cfg, key) <= 0:
            raise UsageError(f"{key} must be positive, got {getattr(cfg, key)}")
    if not 0 <= cfg.dropout < 1:
        raise UsageError(f"dropout must be in [0, 1), got {cfg.dropout}")


def grad_accum_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per optimizer step so that each step sees tokens_per_step tokens over all processes."""
    per_micro = cfg.batch_size * cfg.block_size * world_size
    if cfg.tokens_per_step == 0:
        return 1
    if cfg.tokens_per_step % per_micro:
        raise UsageError(
            f"tokens_per_step {cfg.tokens_per_step} is not a multiple of batch_size*block_size*world_size = "
            f"{cfg.batch_size}*{cfg.block_size}*{world_size} = {per_micro}; change one, or set --tokens-per-step 0"
        )
    return cfg.tokens_per_step // per_micro
