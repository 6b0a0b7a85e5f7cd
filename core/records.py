"""The records that flow through the crawl stages, in the paper's words.

Plain NamedTuples: they pickle everywhere, compare by value, and Beam can infer schemas from them.
Each stage turns one record into the next or into a Drop with a named reason.
"""
from __future__ import annotations

import hashlib
import time
from typing import NamedTuple, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows


class Submission(NamedTuple):
    """One Reddit submission, from a Pushshift dump line or the API."""
    id: str
    url: str                 # the outbound link as posted (not yet normalized)
    karma: int               # the submission's score
    is_self: bool
    over_18: bool            # NSFW
    subreddit: str
    created_utc: int
    source: str = ""         # dump file name, "reddit-api", or "url-list"


class Link(NamedTuple):
    """One normalized outbound link, aggregated over every submission that posted it."""
    url: str                 # normalized URL
    host: str                # lower-case host of `url`
    karma: int               # aggregated karma (max or sum over submissions, see config)
    subreddits: Tuple[str, ...]
    created_utc: int         # first seen
    submissions: int = 1     # how many submissions posted this URL


class Page(NamedTuple):
    """A fetched outbound link: the final response after redirects."""
    link: Link
    final_url: str
    status: int
    content_type: str
    body: bytes              # raw (decompressed) body bytes, bounded by the fetch config
    encoding: str = ""       # charset from the headers or sniffed; "" if unknown
    fetched_at: float = 0.0


class Document(NamedTuple):
    """Main text extracted from a page, with the provenance that goes to the shards."""
    doc_id: str              # 16 hex chars: 64-bit hash of the normalized URL (stable across runs/runners)
    url: str                 # the normalized outbound link (what Reddit pointed at)
    text: str
    karma: int
    subreddits: Tuple[str, ...]
    created_utc: int
    # Filled where the text is extracted (pipeline/per_document.py), so the text need not travel further: then
    # `text` is "" and these carry what dedup and the shards need. Empty when a stage gets a plain Document.
    tokens: bytes = b""      # GPT-2 ids as little-endian uint16, ending with EOT
    fingerprint: str = ""    # exact-duplicate fingerprint of the normalized text
    sig: bytes = b""         # MinHash signature, little-endian uint32 (b"" when near dedup is off or no words)
    payload: str = ""        # where tokens and sig were written instead (core/payloads.py); then both are b""


class Drop(NamedTuple):
    """Something a stage did not keep, and why. Counted per reason in stats.json; examples are written to _drops/."""
    stage: str
    reason: str
    url: str = ""
    detail: str = ""


def doc_id_for(url: str) -> str:
    """64-bit id from the normalized URL, as 16 hex chars (sorts the same as the integer)."""
    return hashlib.blake2b(url.encode("utf-8"), digest_size=8).hexdigest()


# ------------------------------------------------------------------------------------- the Step contract
# The stages, in data-flow order. Every counter and every Drop names one of these; stats.json lists them so.
SOURCE, SUBMISSIONS, LINKS, FETCH, EXTRACT, QUALITY, DEDUP, SHARDS = STAGES = (
    "source", "submissions", "links", "fetch", "extract", "quality", "dedup", "shards")

NAMESPACE = "webtext"   # Beam Metrics namespace of every counter `<stage>.<name>`
DROPPED = "dropped"     # tag of the side output carrying Drop records
DETAIL_CHARS = 500      # a Drop's detail is cut to this many characters


def counter(stage: str, name: str):
    """The Beam counter `<stage>.<name>` (name: in, out, drop.<reason>, or an extra such as `tokens`). Counting
    also marks the stage's clock (mark), so the run knows when each stage first and last did something."""
    return _Clocked(Metrics.counter(NAMESPACE, f"{stage}.{name}"), stage)


CLOCK = "clock_ms"      # Distribution `<stage>.clock_ms`: its min and max are the stage's first and last activity
_CLOCK_STEP_MS = 100    # marks closer than this in one process are skipped (the times are good to 0.1 s)
_clocks: dict = {}


def mark(stage: str) -> None:
    """Record "stage `stage` is active now" (wall clock, ms) unless this process did so in the last 0.1 s."""
    now = int(time.time() * 1000)
    clock = _clocks.get(stage)
    if clock is None:
        clock = _clocks[stage] = [Metrics.distribution(NAMESPACE, f"{stage}.{CLOCK}"), -_CLOCK_STEP_MS]
    if now - clock[1] >= _CLOCK_STEP_MS:
        clock[1] = now
        clock[0].update(now)


class _Clocked:
    __slots__ = ("counter", "stage")

    def __init__(self, c, stage: str):
        self.counter, self.stage = c, stage

    def inc(self, n: int = 1) -> None:
        self.counter.inc(n)
        mark(self.stage)


class Step(beam.DoFn):
    """One counting stage, the datatrove way on Beam: counters and drop routing are handled here, once.

    Element-wise: set `stage` and implement `apply(element) -> output | Drop | None`; process() counts `in` and
    routes the result (a Drop to the `dropped` output, counted as `drop.<reason>`; anything else to the main
    output, counted as `out`; None: no output and nothing to count). Grouped or combined inputs (one element that
    stands for n inputs) override process(): `self.count("in", n)`, then `yield from self.emit(result)` per result,
    and `self.count(f"drop.{reason}", n)` for inputs merged away without a record of their own. At every stage,
    in == out + sum(drop.*); `pipeline/stats.py` reads the counters back. Apply with
    `.with_outputs(DROPPED, main=...)`.
    """
    stage = ""

    def __init__(self):
        super().__init__()
        self._counters = {}

    def count(self, name: str, n: int = 1, stage: str = "") -> None:
        """Count under this step's stage, or under `stage` for a step that also does a later stage's work."""
        # Beam metrics live in the thread that runs the DoFn: call this from process()/finish_bundle() only.
        key = (stage or self.stage, name)
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = counter(*key)
        c.inc(n)

    def apply(self, element):
        raise NotImplementedError

    def infer_output_type(self, input_type):
        # Beam would infer Union[TaggedOutput, Drop, ...] from process() and then reject a following
        # key-value transform; the main output's type is whatever apply() returns.
        return beam.typehints.Any

    def drop(self, reason: str, url: str = "", detail: str = "") -> Drop:
        return Drop(self.stage, reason, url, detail[:DETAIL_CHARS])

    def process(self, element):
        self.count("in")
        yield from self.emit(self.apply(element))

    @staticmethod
    def windowed(outputs):
        """Outputs of finish_bundle (which has no element to inherit a window from) in the global window."""
        for out in outputs:
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
            else:
                yield GlobalWindows.windowed_value(out)

    def emit(self, result):
        """Count one result and route it: a Drop to `dropped`, anything else to the main output."""
        if isinstance(result, Drop):
            self.count(f"drop.{result.reason}", stage=result.stage)
            yield beam.pvalue.TaggedOutput(DROPPED, result)
        elif result is not None:
            self.count("out")
            yield result
