"""_drops/: examples of what each stage did not keep, next to the shards.

Exact counts per stage and reason are Beam counters (stats.json); the files list at most `per_reason` Drops per
(stage, reason), so a 10^6-line dump whose lines are nearly all dropped gives a few MB, not one line per drop.
Which examples are kept does not depend on bundle order: the smallest by a stable hash of the record, per reason.
The directory starts with "_" so `pyarrow.dataset(shard_dir, format="ipc")` skips it, as it skips hidden files.
Files are gzip'd JSON lines (`zcat _drops/*.gz | jq`), written by Beam's WriteToText: each appears whole, at the
end of the run, under its final name.
"""
from __future__ import annotations

import gzip
import json
from typing import Iterator

import apache_beam as beam

from core import files
from core.records import Drop
from crawl.links import example_order

DROPS_DIR = "_drops"


def drop_json(d: Drop) -> str:
    """One JSON line, readable UTF-8; a string the outside gave us that UTF-8 cannot hold (a lone surrogate, or a
    file name's undecodable bytes) is written as a JSON \\u escape instead of failing the writer."""
    line = json.dumps(d._asdict(), ensure_ascii=False)
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(d._asdict())
    return line


def _by_reason(d: Drop):
    return (d.stage, d.reason), d


class WriteDrops(beam.PTransform):
    """A PCollection of Drops -> `<out_dir>/_drops/drops-SSSSS-of-NNNNN.jsonl.gz`, at most `per_reason` each."""

    def __init__(self, out_dir: str, per_reason: int = 2000):
        super().__init__()
        self.out_dir, self.per_reason = out_dir, per_reason

    def expand(self, drops):
        by_reason = drops | "ByReason" >> beam.Map(_by_reason)
        # The number of Drop records per (stage, reason), before the cap: an account from the data itself, exact
        # on any runner (pipeline/crosscheck.py compares it with the metrics).
        _ = (by_reason
             | "CountPerReason" >> beam.combiners.Count.PerKey()
             | "CountToJson" >> beam.Map(lambda kv: json.dumps({"stage": kv[0][0], "reason": kv[0][1], "records": kv[1]}))
             | "WriteCounts" >> beam.io.WriteToText(files.join(self.out_dir, DROPS_DIR, "counts"),
                                                    file_name_suffix=".jsonl"))
        return (by_reason
                | "Examples" >> beam.combiners.Top.PerKey(self.per_reason, key=example_order, reverse=True)
                | "Each" >> beam.FlatMap(lambda kv: sorted(kv[1], key=example_order))
                | "ToJson" >> beam.Map(drop_json)
                | "Write" >> beam.io.WriteToText(files.join(self.out_dir, DROPS_DIR, "drops"),
                                                 file_name_suffix=".jsonl.gz"))


def read_drops(out_dir: str) -> Iterator[Drop]:
    """Every Drop listed under `out_dir`/_drops/."""
    for path in files.match(files.join(out_dir, DROPS_DIR, "drops*.jsonl.gz")):
        for line in gzip.decompress(files.read_bytes(path)).decode("utf-8").splitlines():
            if line.strip():
                yield Drop(**json.loads(line))
