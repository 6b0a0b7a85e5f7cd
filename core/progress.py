"""Progress a person can read: a tqdm bar (with total and ETA when the total is known) on a terminal; in a log or a
pipe, one plain line every few seconds per stage, with no carriage returns or cursor codes; nothing with --quiet."""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

from tqdm.auto import tqdm

PLAIN_INTERVAL = 10.0   # seconds between plain lines


def _human(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class PlainProgress:
    """The parts of tqdm's interface the stages use (update, total, set_postfix_str, close, context manager),
    printing `desc: n/total unit (rate/s, ETA h:mm:ss)` at most every `interval` seconds and once at close."""

    def __init__(self, desc: str, total: Optional[float], unit: str, interval: Optional[float] = None, file=None,
                 unit_scale: bool = False):
        self.desc, self.total, self.unit = desc, total, unit
        self.interval = PLAIN_INTERVAL if interval is None else interval
        self.file, self.unit_scale = file or sys.stderr, unit_scale
        self.n, self.postfix, self.start = 0, "", time.monotonic()
        self.updated = self.start   # the last update: the closing line's time and rate end there, not at close
        self.last, self._lock, self.closed = self.start, threading.Lock(), False

    def _fmt(self, v: float) -> str:
        if self.unit_scale and v >= 1000:
            for prefix in ("k", "M", "G", "T"):
                v /= 1000
                if v < 1000:
                    return f"{v:.1f}{prefix}"
        return f"{v:,.0f}"

    def line(self, now: Optional[float] = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.n / elapsed
        done = f"{self._fmt(self.n)}/{self._fmt(self.total)}" if self.total else self._fmt(self.n)
        eta = ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", ETA {_human((self.total - self.n) / rate)}"
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done} {self.unit} ({self._fmt(rate)} {self.unit}/s, {_human(elapsed)} elapsed{eta}{extra})"

    def update(self, n: float = 1) -> None:
        with self._lock:
            self.n += n
            now = self.updated = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                print(self.line(), file=self.file, flush=True)

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfix = s

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            if not self.closed and self.n:
                print(self.line(self.updated) + " done", file=self.file, flush=True)
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress_bar(desc: str, total: Optional[float] = None, unit: str = "it", quiet: bool = False,
                 unit_scale: bool = False, file=None):
    """A tqdm bar on a terminal, plain periodic lines elsewhere, a silent bar with `quiet`."""
    file = file or sys.stderr
    if quiet:
        return tqdm(total=total, disable=True)
    if getattr(file, "isatty", lambda: False)():
        return tqdm(desc=desc, total=total, unit=unit, unit_scale=unit_scale, dynamic_ncols=True, mininterval=1.0,
                    file=file)
    return PlainProgress(desc, total, unit, file=file, unit_scale=unit_scale)


# Runners whose workers are direct_num_workers; Prism runs several bundles of a stage at once, so it is not one.
LOCAL_RUNNERS = ("", "DirectRunner", "SwitchingDirectRunner", "FnApiRunner", "BundleBasedDirectRunner")


def workers_of(options) -> Optional[int]:
    """How many workers share a stage on these Beam pipeline options: direct_num_workers on a local runner, None
    (several, number unknown) on a cluster runner."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    if (name or "").rsplit(".", 1)[-1] not in LOCAL_RUNNERS:
        return None
    workers = options.view_as(DirectOptions).direct_num_workers or 1
    return workers if workers > 0 else (os.cpu_count() or 1)


def stage_bar(desc: str, total: Optional[int], workers: Optional[int], unit: str, quiet: bool = False, file=None):
    """A pipeline stage's bar. With one worker, the stage's total and an ETA. Where several workers share the
    stage, each sees only the elements given to it, and how many that will be is not known: each bar counts its
    own share, says so, and gives the whole stage's total for scale, without an ETA it could not keep."""
    if not total or workers == 1:
        return progress_bar(desc, total=total or None, unit=unit, quiet=quiet, file=file)
    return progress_bar(f"{desc} (this worker's share of {total:,} in all)", unit=unit, quiet=quiet, file=file)
