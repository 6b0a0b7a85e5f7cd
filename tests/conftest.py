import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

os.environ.setdefault("TQDM_DISABLE", "1")          # no progress bars in test logs
logging.getLogger("apache_beam").setLevel(logging.ERROR)


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
