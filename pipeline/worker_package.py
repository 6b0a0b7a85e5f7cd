"""The package a cluster's workers install: this project as a wheel with the GPT-2 vocabulary inside.

Workers on Dataflow, Spark or Flink run the DoFns in an SDK harness that has Beam but not this project, and no
network to fetch the vocabulary from (nor the user's ~/.cache, where `make install` put it). So the wheel carries
both: core/assets/gpt2.tiktoken (the verified r50k_base file) is package data, and core.tokenizer looks
there after the environment variable and the user cache. Give it to a run with `--extra_package dist/webtext-*.whl`
(Beam stages it and pip-installs it on every worker before the first bundle), or bake it into an SDK container.

    python -m pipeline.worker_package dist/      # -> dist/webtext-0.1.0-py3-none-any.whl
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from core import tokenizer

ROOT = Path(__file__).resolve().parents[1]
ASSET = "core/assets/gpt2.tiktoken"


def place_vocab() -> Path:
    """Copy the verified vocabulary into the source tree's package data (ignored by git), fetching it if needed."""
    dest = ROOT / ASSET
    if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == tokenizer.VOCAB_SHA256:
        return dest
    src = next((p for p in tokenizer._candidates() if p.is_file() and p != dest), None) or tokenizer.fetch_vocab()
    if hashlib.sha256(src.read_bytes()).hexdigest() != tokenizer.VOCAB_SHA256:
        raise tokenizer.TokenizerUnavailable(f"{src} is not the GPT-2 vocabulary (sha256 mismatch)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def build(out_dir: str | Path) -> Path:
    """Build the wheel into out_dir and check that the vocabulary is inside; returns the wheel's path."""
    if not (ROOT / "pyproject.toml").is_file():
        raise RuntimeError(f"no source checkout at {ROOT}: build the worker wheel from a clone of webtext")
    place_vocab()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # --no-build-isolation: use the venv's setuptools rather than fetch one (works offline); --no-deps: the
    # workers' pip resolves the dependencies from the wheel's metadata.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, cwd=out)
    wheel = max(out.glob("webtext-*.whl"), key=lambda p: p.stat().st_mtime)
    with zipfile.ZipFile(wheel) as z:
        if hashlib.sha256(z.read(ASSET)).hexdigest() != tokenizer.VOCAB_SHA256:
            raise RuntimeError(f"{wheel} carries a wrong {ASSET}")
    return wheel


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "dist"))
