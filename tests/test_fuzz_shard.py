"""Fuzz target: a shard file. A real shard directory (the project's writer: write_shard + write_manifest, several
record batches) whose shard bytes are then mutated (bytes changed, zeroed, cut or inserted) and given to `webtext shards verify` (pipeline/shards/cli.py -> format.verify) and to the trainer's
loader (train/data.py TokenWindows). With the manifest as written, verify reports the file as bad in one-line
problems (exit 1, no traceback) and the loader refuses it with one ShardError line. With a manifest rewritten to
match the damaged file (sha256 and size; what a buggy writer or a hand-edited corpus gives), the deeper checks
must hold on their own: verify never raises, the loader either refuses with a ShardError or serves only token ids
< vocab size, exactly the manifest's count of them. Budget: the `ci` profile; `bench/fuzz.py --target shard`."""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("torch")
from hypothesis import example, given, strategies as st  # noqa: E402

from pipeline.shards import cli  # noqa: E402
from core.shard_format import MANIFEST, TokenizedDoc, shard_token_batches, verify, write_manifest  # noqa: E402
from core.tokenizer import EOT, VOCAB_SIZE  # noqa: E402
from pipeline.shards.assemble import write_shard  # noqa: E402
from train.data import ShardError, TokenWindows  # noqa: E402

BLOCK = 8


def _docs():
    rng = np.random.default_rng(7)
    docs = []
    for i in range(12):
        toks = np.append(rng.integers(0, EOT, size=int(rng.integers(3, 40))), EOT).astype(np.uint16)
        docs.append(TokenizedDoc(f"{i * 0x1111111111111:016x}", f"http://example.com/{i}", toks, i, ("r",), i))
    return docs


GOOD = tempfile.mkdtemp(prefix="fuzz-shard-good-")
_INFO = write_shard(GOOD, "train", 0, 1, _docs(), batch_tokens=64)       # several record batches
write_manifest(GOOD, [_INFO], {})
SHARD = _INFO.name
ORIGINAL = open(os.path.join(GOOD, SHARD), "rb").read()
CASE = tempfile.mkdtemp(prefix="fuzz-shard-case-")                      # rewritten per case (no fixtures)
for _d in (GOOD, CASE):
    atexit.register(shutil.rmtree, _d, True)


def write_case(data: bytes, fix_manifest: bool) -> str:
    shutil.rmtree(CASE, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.join(CASE, SHARD)))    # SHARD is data/... (the HF Hub layout)
    with open(os.path.join(CASE, SHARD), "wb") as f:
        f.write(data)
    manifest = json.loads(open(os.path.join(GOOD, MANIFEST)).read())
    if fix_manifest:
        manifest["shards"][0].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    with open(os.path.join(CASE, MANIFEST), "w") as f:
        json.dump(manifest, f)
    return CASE


def cli_verify(d: str):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["verify", d])
    return rc, out.getvalue(), err.getvalue()


def load(d: str):
    """The loader's tokens (all buffers), or the ShardError text."""
    try:
        w = TokenWindows(d, "train", BLOCK)
    except ShardError as e:
        return str(e)
    return [np.asarray(b) for b in w.buffers], w.split_tokens


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(ORIGINAL) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(ORIGINAL) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(ORIGINAL)), st.integers(0, 255)),
    st.tuples(st.just("zero"), st.integers(0, len(ORIGINAL) - 1), st.integers(1, 64)),
)


def mutate(how: str, pos: int, arg: int) -> bytes:
    b = ORIGINAL
    if how == "flip":
        return b[:pos] + bytes([b[pos] ^ arg]) + b[pos + 1:]
    if how == "cut":
        return b[:pos]
    if how == "insert":
        return b[:pos] + bytes([arg]) + b[pos:]
    return b[:pos] + bytes(min(arg, len(b) - pos)) + b[pos + arg:]


@given(mutations)
@example(("cut", len(ORIGINAL) // 2, 0))
@example(("flip", 0, 1))
def test_a_damaged_shard_is_reported_and_refused(m):
    data = mutate(*m)
    if data == ORIGINAL:
        return
    d = write_case(data, fix_manifest=False)
    problems = verify(d)
    assert problems and all(isinstance(p, str) and "\n" not in p for p in problems)
    rc, out, err = cli_verify(d)
    assert rc == 1 and "Traceback" not in out + err and out.strip()
    got = load(d)
    assert isinstance(got, str) and "\n" not in got and SHARD in got


@given(mutations)
@example(("zero", 8, 8))
@example(("flip", 2204, 2))    # found by fuzz: a list offset past its values (IndexError out of verify; the loader
                               # sliced it short silently); the position is this writer's layout of _docs()
@example(("zero", 6357, 20))   # found by fuzz: a zeroed schema field (ArrowNotImplementedError out of the loader)
@example(("flip", 6036, 128))  # found by fuzz: metadata that is not UTF-8 (UnicodeDecodeError out of the loader)
def test_a_damaged_shard_with_a_matching_manifest_is_refused_or_valid(m):
    d = write_case(mutate(*m), fix_manifest=True)
    problems = verify(d)                                     # never raises
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    rc, out, err = cli_verify(d)
    assert rc == (1 if problems else 0) and "Traceback" not in out + err
    got = load(d)
    if isinstance(got, str):
        assert "\n" not in got and got
        return
    buffers, n_tokens = got
    # accepted: only valid token ids, exactly as many as the manifest says (the loader's own count)
    assert n_tokens == _INFO.tokens
    assert all(int(b.max()) < VOCAB_SIZE for b in buffers if len(b))


def test_a_list_offset_past_its_values_is_refused_by_the_loader():
    """Found by fuzz: one flipped bit in a record batch's list offsets (35 instead of 33, past the 33 token values).
    On main the loader sliced the buffer short and trained on it without a word; verify raised IndexError."""
    d = write_case(mutate("flip", 2204, 2), fix_manifest=True)
    assert any("unreadable Arrow file" in p for p in verify(d))
    got = load(d)
    assert isinstance(got, str) and "not a readable shard" in got


def test_a_damaged_schema_is_refused_by_the_loader_with_one_line():
    """Found by fuzz: 20 zeroed bytes in the footer's schema make pyarrow raise ArrowNotImplementedError ("Integers
    with less than 8 bits"), which is neither OSError nor ValueError: a traceback out of the trainer on main."""
    d = write_case(mutate("zero", 6357, 20), fix_manifest=True)
    got = load(d)
    assert isinstance(got, str) and "not a readable shard" in got


def test_shard_metadata_that_is_not_utf8_is_refused_by_the_loader_with_one_line():
    """Found by fuzz: one flipped bit makes the shard's vocab_sha256 metadata invalid UTF-8; the loader's check
    decoded it strictly and raised UnicodeDecodeError on main (verify reported it correctly)."""
    d = write_case(mutate("flip", 6036, 128), fix_manifest=True)
    assert any("metadata vocab_sha256" in p for p in verify(d))
    got = load(d)
    assert isinstance(got, str) and "tokenizer metadata vocab_sha256" in got
