"""The run's account from its data, checked against the one from Beam metrics.

Metrics are only as exact as the runner makes them: Dataflow and FnApiRunner commit the counters of successful
bundles only, Beam's Spark runner reports attempted counters (a retried task counts twice), a runner may report
none. The run's outputs are exact on every runner (outputs of failed bundles are discarded): the manifest says
how many documents reached the shards, and _drops/counts-*.jsonl how many Drop records each (stage, reason) had
before the examples were capped. So stats.json carries that data-derived account too ("from_data"), and any
disagreement with the metrics is named. The first stages (source, submissions, links) judge most of their inputs
in bulk inside the reading DoFn and pass on capped examples, not one record per drop: their reasons are not
compared (listed under "examples_only").
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List

from apache_beam.io.filesystems import FileSystems

from core import files
from core.records import LINKS, SOURCE, SUBMISSIONS
from pipeline.drops import DROPS_DIR

EXAMPLES_ONLY = (SOURCE, SUBMISSIONS, LINKS)


def from_data(out_dir: str) -> dict:
    """{"shards_out": docs in the manifest, "dropped": {stage: {reason: n}} from _drops/counts-*.jsonl (when written)}."""
    try:
        with FileSystems.open(FileSystems.join(out_dir, "manifest.json")) as f:
            shards_out = sum(s["docs"] for s in json.load(f)["shards"])
    except (OSError, ValueError, KeyError):   # no manifest: the writer's own error says why
        shards_out = None
    counts: Counter = Counter()
    paths = files.match(files.join(out_dir, DROPS_DIR, "counts*.jsonl"))   # none when run.write_drops = false
    for path in paths:
        for line in files.read_bytes(path).decode("utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                counts[(d["stage"], d["reason"])] += d["records"]
    dropped: Dict[str, Dict[str, int]] = {}
    for (stage, reason), n in sorted(counts.items()):
        dropped.setdefault(stage, {})[reason] = n
    return {"shards_out": shards_out, "dropped": dropped, "drops_written": bool(paths),
            "examples_only": list(EXAMPLES_ONLY)}


def disagreements(stats: Dict[str, dict], data: dict) -> List[str]:
    """Where the metrics and the data disagree (drop reasons the data does not list, such as links merged into
    another, are not compared)."""
    out = []
    metric_out = stats.get("shards", {}).get("out", 0)
    if data["shards_out"] is not None and metric_out != data["shards_out"]:
        out.append(f"shards: metrics count {metric_out} documents out, the manifest lists {data['shards_out']}")
    for stage, reasons in data["dropped"].items():
        if stage in EXAMPLES_ONLY:
            continue
        for reason, n in reasons.items():
            m = stats.get(stage, {}).get("dropped", {}).get(reason, 0)
            if m != n:
                out.append(f"{stage}: metrics count {m} dropped as {reason}, the data has {n} records")
    return out
