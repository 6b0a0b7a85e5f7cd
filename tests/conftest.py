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
