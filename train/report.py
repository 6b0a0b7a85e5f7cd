"""The run's record: OUT/log.jsonl (one JSON object per logged step) and OUT/loss.png drawn from it."""

from __future__ import annotations

import json
from pathlib import Path

from core import files
from core.plots import new_figure, save_figure

LOG_NAME = "log.jsonl"
PLOT_NAME = "loss.png"


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a crash: everything after it is suspect too
            break
    return records


def rewrite_log(path: str | Path, records: list[dict]) -> None:
    """Replace the log with `records` atomically (used on resume to drop steps after the checkpoint)."""
    files.write_atomic(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def write_plot(records: list[dict], path: str | Path, title: str = "") -> None:
    """Train and val loss against step, written atomically. Uses the Agg canvas directly: no pyplot global state."""
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    fig, ax = new_figure(7, 4.5)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="val", linewidth=1.5, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
