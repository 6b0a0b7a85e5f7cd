"""The run's account from its data, checked against the one from Beam metrics.

Metrics are only as exact as the runner makes them: Dataflow and FnApiRunner commit the counters of successful
bundles only, Beam's Spark runner reports attempted counters (a retried task counts twice), a runner may report
none. The run's outputs are exact on every runner (outputs of failed bundles are discarded): the manifest says
how many documents reached the shards and drops/ holds one line per dropped URL with its stage and reason. So
stats.json carries that data-derived account too ("from_data"), and any disagreement with the metrics is named.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List

from apache_beam.io.filesystems import FileSystems


def from_data(out_dir: str) -> dict:
    """{"shards_out": docs in the manifest, "dropped": {stage: {reason: n}} from drops/*.jsonl (when written)}."""
    try:
        with FileSystems.open(FileSystems.join(out_dir, "manifest.json")) as f:
            shards_out = sum(s["docs"] for s in json.load(f)["shards"])
    except (OSError, ValueError, KeyError):   # no manifest: the writer's own error says why
        shards_out = None
    counts: Counter = Counter()
    try:
        pattern = FileSystems.join(out_dir, "drops", "drops*.jsonl")
        paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:   # Beam raises BeamIOError when drops/ was not written (run.write_drops = false)
        paths = []
    for path in paths:
        with FileSystems.open(path) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    counts[(d["stage"], d["reason"])] += 1
    dropped: Dict[str, Dict[str, int]] = {}
    for (stage, reason), n in sorted(counts.items()):
        dropped.setdefault(stage, {})[reason] = n
    return {"shards_out": shards_out, "dropped": dropped, "drops_written": bool(paths)}


def disagreements(stats: Dict[str, dict], data: dict) -> List[str]:
    """Where the metrics and the data disagree (drop reasons the data does not list, such as links merged into
    another, are not compared)."""
    out = []
    metric_out = stats.get("shards", {}).get("out", 0)
    if data["shards_out"] is not None and metric_out != data["shards_out"]:
        out.append(f"shards: metrics count {metric_out} documents out, the manifest lists {data['shards_out']}")
    for stage, reasons in data["dropped"].items():
        for reason, n in reasons.items():
            m = stats.get(stage, {}).get("dropped", {}).get(reason, 0)
            if m != n:
                out.append(f"{stage}: metrics count {m} dropped as {reason}, drops/ lists {n}")
    return out
