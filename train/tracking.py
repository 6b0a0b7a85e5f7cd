"""Experiment trackers beside OUT/log.jsonl: TensorBoard event files (when tensorboard is installed) and wandb
(when installed and asked for with --wandb). log.jsonl stays the record; these are views of the same numbers.

    webtext train ... [--no-tensorboard] [--wandb [--wandb-project NAME]]
    tensorboard --logdir OUT
`webtext train --overwrite` removes the earlier run's event files and eval.json, so TensorBoard shows one run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.settings import UsageError

SCALARS = ("loss", "val_loss", "lr", "tokens_per_s", "mfu", "grad_norm")
TB_SUFFIX = ".webtext"     # our event files end in it: a rerun removes those, never another tool's
EVAL_NAME = "eval.json"    # `webtext eval`'s report beside the checkpoint (train/eval.py)
EVAL_KEYS = {"ckpt", "source", "lm", "cloze"}


def earlier_run_files(out_dir) -> list[Path]:
    """What an earlier run in out_dir wrote beside its checkpoint and log, which `train --overwrite` must remove
    so that TensorBoard and eval.json show this run only: our TensorBoard event files and `webtext eval`'s report.
    A file of the same kind that webtext did not write (no suffix; an eval.json of other keys) is left alone."""
    out_dir = Path(out_dir)
    found = sorted(out_dir.glob(f"events.out.tfevents.*{TB_SUFFIX}"))
    report = out_dir / EVAL_NAME
    try:
        if EVAL_KEYS <= set(json.loads(report.read_text())):
            found.append(report)
    except (OSError, ValueError, TypeError):
        pass
    return [p for p in found if p.is_file()]


def add_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("trackers")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="TensorBoard event files in OUT (default on when tensorboard is installed)")
    g.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (needs `pip install wandb`)")
    g.add_argument("--wandb-project", default="webtext", help="wandb project (default webtext)")


class Trackers:
    """Fan one log record out to every enabled tracker; a no-op on non-master processes."""

    def __init__(self, args, out_dir, config: dict, start_step: int, master: bool):
        self.tb = self.wandb = None
        if not master:
            return
        if getattr(args, "wandb", False):
            try:
                import wandb
            except ImportError:
                raise UsageError("--wandb, but wandb is not installed: pip install wandb") from None
            self.wandb = wandb.init(project=args.wandb_project, dir=str(out_dir), config=config,
                                    resume="allow" if start_step else None)
        if getattr(args, "tensorboard", True):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # torch's writer needs the tensorboard package: optional
                SummaryWriter = None
            if SummaryWriter is not None:
                # purge_step: a resumed run hides the events logged after its checkpoint, as log.jsonl drops them
                self.tb = SummaryWriter(log_dir=str(out_dir), purge_step=start_step or None,
                                        filename_suffix=TB_SUFFIX)

    def log(self, record: dict) -> None:
        step = record["step"]
        values = {k: record[k] for k in SCALARS if record.get(k) is not None}
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}" if k != "val_loss" else "val/loss", v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
