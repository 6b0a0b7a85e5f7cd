"""One small contract per step, counters handled once (the datatrove way, on Beam).

A `Step` is a DoFn whose `apply(element)` returns the kept output or a `Drop`. The base counts, per stage,
`in`, `out` and `drop.<reason>` as Beam Metrics counters in the "webtext" namespace, and sends each Drop to the
`dropped` tagged output. `pipeline/stats.py` reads the counters back so that, at every stage,
in == out + sum(drop.*).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from crawl.records import Drop

NAMESPACE = "webtext"
DROPPED = "dropped"   # tag of the side output carrying Drop records

def counter(stage: str, name: str):
    """The Beam counter `<stage>.<name>` in the webtext namespace (name: in, out, drop.<reason>, or any extra)."""
    return Metrics.counter(NAMESPACE, f"{stage}.{name}")

class Step(beam.DoFn):
    """Element-wise stage: subclass, set `stage`, implement `apply(element) -> output | Drop | None`.

    Returning None means "no output and nothing to count as dropped" (rare: use only for elements that were
    never counted in). Use `.with_outputs(DROPPED, main="kept")` when applying it.
    """
    stage = "step"

    def __init__(self):
        super().__init__()
        self._counters = {}

    def count(self, name: str, n: int = 1) -> None:
        c = self._counters.get(name)
        if c is None:
            c = self._counters[name] = counter(self.stage, name)
        c.inc(n)

    def apply(self, element):
        raise NotImplementedError

    def infer_output_type(self, input_type):
        # Beam would infer Union[TaggedOutput, Drop, ...] from process() and then reject a following
        # key-value transform; the main output's type is whatever apply() returns.
        return beam.typehints.Any

    def drop(self, reason: str, url: str = "", detail: str = "") -> Drop:
        return Drop(self.stage, reason, url, detail[:500])

    def process(self, element):
        self.count("in")
        yield from self.emit(self.apply(element))

    def emit(self, result):
        """Count one result of apply() and route it: a Drop to `dropped`, anything else to the main output."""
        if isinstance(result, Drop):
            self.count(f"drop.{result.reason}")
            yield beam.pvalue.TaggedOutput(DROPPED, result)
        elif result is not None:
            self.count("out")
            yield result
