import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

os.environ.setdefault("TQDM_DISABLE", "1")          # no progress bars in test logs
logging.getLogger("apache_beam").setLevel(logging.ERROR)

try:   # Hypothesis profiles for tests/test_fuzz_*.py: `ci` (default) is small and reproducible; bench/fuzz.py
    # selects `long` (HYPOTHESIS_PROFILE=long) and drives the time budget itself.
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, database=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                              print_blob=False)
    settings.register_profile("long", max_examples=10_000, deadline=None, derandomize=False, database=None,
                              suppress_health_check=list(HealthCheck), print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:   # pragma: no cover - hypothesis is in the `test` extra; the fuzz tests skip without it
    pass


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


def beam_pipeline():
    """A Beam pipeline on FnApiRunner (Beam's local portable runner; DirectRunner would first try Prism)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    return beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def counters(result) -> dict:
    from pipeline.stats import counters_from_result
    return counters_from_result(result)


def committed_outcomes(warc_dir: str) -> dict:
    """url -> the outcome record a rerun would replay, read with the pipeline's own parsing and preference."""
    from crawl.fetch.warc import outcome_files, parse_outcomes, preference
    index = {}
    for path in outcome_files(warc_dir):
        with open(path, encoding="utf-8") as f:
            for rec in parse_outcomes(f):
                if rec.url not in index or preference(rec) < preference(index[rec.url]):
                    index[rec.url] = rec
    return index


def respond_html(h, page: str) -> None:
    """From a LoopbackWeb handler: `page` as a whole 200 text/html response."""
    body = page.encode()
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def recording_handler(seen: list, page: str):
    """A LoopbackWeb handler that serves `page` as HTML and records (request target, Host header) in `seen`: what a
    proxy was asked for, e.g. a pinned address with the name in Host."""
    def handler(h, url):
        seen.append((h.path, h.headers.get("Host")))
        respond_html(h, page)
    return handler


def link_for(url: str, karma: int = 5):
    """An outbound Link to `url`, as the link stage emits it."""
    from core.records import Link
    return Link(url, url.split("/")[2], karma, ("science",), 1_400_000_000, 1)


COLLECTED: dict = {}   # FnApiRunner runs in this process: sinks append here


def collect(x, name):
    COLLECTED.setdefault(name, []).append(x)   # module-level: pickles by reference, so this is the live dict


def run_fetch(links, cfg, tag):
    """FetchPages over `links` on FnApiRunner: (pages, drops, counters by name, 0 when absent)."""
    import collections
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from crawl.fetch.transform import FetchPages
    COLLECTED.pop(f"{tag}.pages", None), COLLECTED.pop(f"{tag}.drops", None)
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | f"Create{tag}" >> beam.Create(links) | FetchPages(cfg, quiet=True)
    out["pages"] | f"Pages{tag}" >> beam.Map(collect, f"{tag}.pages")
    out["dropped"] | f"Drops{tag}" >> beam.Map(collect, f"{tag}.drops")
    result = p.run()
    result.wait_until_finish()
    return (COLLECTED.get(f"{tag}.pages", []), COLLECTED.get(f"{tag}.drops", []),
            collections.defaultdict(int, counters(result)))
