"""Per-stage accounting from Beam Metrics: at every stage, in == out + sum(dropped by reason).

Counters are named `<stage>.in`, `<stage>.out`, `<stage>.drop.<reason>` in the "webtext" namespace (see
core/records.py, where STAGES lists them in data-flow order); anything else (`shards.tokens`, `fetch.retries`, ...) is kept as an extra of its stage.
"""
from __future__ import annotations

import json
from typing import Dict, List

from apache_beam.metrics.metric import MetricsFilter

from core import files
from core.records import CLOCK, NAMESPACE, STAGES
from pipeline.drops import read_drops


def counters_from_result(result) -> Dict[str, int]:
    """{counter name: value} from a finished PipelineResult (committed where the runner has it)."""
    out: Dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def stage_times(result, start: float) -> Dict[str, dict]:
    """{stage: {"start", "end", "seconds"}}: when each stage first and last counted something, in seconds since the
    run's `start` (time.time()), good to about 0.1 s. Stages overlap (extraction runs while the fetch goes on), so
    their seconds add up to more than the run's. Empty where the runner keeps no distributions."""
    times: Dict[str, dict] = {}
    try:
        dists = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["distributions"]
    except Exception:   # a runner without distribution metrics: no per-stage times rather than no stats
        return times
    for d in dists:
        stage, _, name = d.key.metric.name.partition(".")
        value = d.committed if d.committed is not None else d.attempted
        if name != CLOCK or value is None or not value.count:
            continue
        lo, hi = value.min / 1000 - start, value.max / 1000 - start
        if stage in times:   # the same stage in several steps: its span covers them all
            lo, hi = min(lo, times[stage]["start"]), max(hi, times[stage]["end"])
        times[stage] = {"start": round(max(lo, 0.0), 1), "end": round(max(hi, 0.0), 1),
                        "seconds": round(max(hi - lo, 0.0), 1)}
    order = {s: i for i, s in enumerate(STAGES)}
    return dict(sorted(times.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def stage_stats(counters: Dict[str, int], stages=()) -> Dict[str, dict]:
    """Per-stage totals; `stages` that counted nothing (e.g. no document reached them) appear with zeros."""
    stats: Dict[str, dict] = {stage: {"in": 0, "out": 0, "dropped": {}, "extra": {}} for stage in stages}
    for name, value in counters.items():
        stage, _, rest = name.partition(".")
        s = stats.setdefault(stage, {"in": 0, "out": 0, "dropped": {}, "extra": {}})
        if rest in ("in", "out"):
            s[rest] += value
        elif rest.startswith("drop."):
            s["dropped"][rest[5:]] = s["dropped"].get(rest[5:], 0) + value
        else:
            s["extra"][rest] = value
    order = {s: i for i, s in enumerate(STAGES)}
    ordered = {}
    for stage in sorted(stats, key=lambda s: (order.get(s, len(order)), s)):
        s = stats[stage]
        s["dropped"] = dict(sorted(s["dropped"].items(), key=lambda kv: (-kv[1], kv[0])))
        s["balanced"] = s["in"] == s["out"] + sum(s["dropped"].values())
        ordered[stage] = s
    return ordered


def unbalanced(stats: Dict[str, dict]) -> List[str]:
    return [f"{name}: in {s['in']} != out {s['out']} + dropped {sum(s['dropped'].values())}"
            for name, s in stats.items() if not s["balanced"]]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def format_table(stats: Dict[str, dict], times: Dict[str, dict] | None = None,
                 seconds: float | None = None) -> str:
    """The end-of-run table: one row per stage (with its wall time, first to last activity), its drops by reason;
    then the run's total time."""
    times = times or {}
    lines = [f"{'stage':<12} {'in':>9} {'out':>9} {'dropped':>9} {'time':>7}  by reason", "-" * 86]
    for name, s in stats.items():
        dropped = sum(s["dropped"].values())
        reasons = ", ".join(f"{r} {n}" for r, n in s["dropped"].items()) or "-"
        mark = "" if s["balanced"] else "   <-- does not add up"
        took = _clock(times[name]["seconds"]) if name in times else "-"
        lines.append(f"{name:<12} {s['in']:>9,} {s['out']:>9,} {dropped:>9,} {took:>7}  {reasons}{mark}")
    if seconds is not None:
        lines.append(f"total time {_clock(seconds)} ({seconds:,.1f} s); stages overlap, so their times add up to more")
    return "\n".join(lines)


DAMAGED = ("corrupt_file", "truncated_file")   # source drops that stand for the unread rest of one input file


def damaged_inputs(out_dir: str, stats: Dict[str, dict]) -> List[str]:
    """Which input files were damaged and where (their drop details in _drops/); read only when there are any."""
    if not any(stats.get("source", {}).get("dropped", {}).get(r) for r in DAMAGED):
        return []
    return sorted(d.detail for d in read_drops(out_dir) if d.stage == "source" and d.reason in DAMAGED)


def write_stats(path: str, stats: Dict[str, dict], extra: dict | None = None) -> None:
    """stats.json beside the shards; with `damaged_inputs` (file and where) when an input file could not be read
    to its end. json.dumps escapes every non-ASCII character, so no string can fail to encode here."""
    extra = dict(extra or {})
    damaged = damaged_inputs(path.rsplit("/", 1)[0], stats)
    if damaged:
        extra["damaged_inputs"] = damaged
    files.write_atomic(path, json.dumps({"stages": stats, **extra}, indent=2).encode())
