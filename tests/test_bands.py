"""LSH buckets found from band files (dedup/bands.py): the same candidates as grouping every (band, key) record,
however the entries are cut into files; the files go when the run is done, and nothing else in their folder."""
from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
from hypothesis import given, settings, strategies as st

from conftest import beam_pipeline
from dedup import bands
from dedup.minhash import Entry

BANDS = 3


def entries(draw_keys, n, fingerprints=None):
    """(fingerprint, Entry) pairs; fingerprints drawn or one per entry."""
    out = []
    for i in range(n):
        keys = np.array(draw_keys[i], dtype="<u8").tobytes()
        ref = f"{i:020x}:0:2:8:512" if i % 2 else ""
        fp = f"fp{fingerprints[i]}" if fingerprints else f"fp-{i}"
        out.append((fp, Entry(f"{i % (n - 1 or 1):016x}", i % 4, keys, b"" if ref else bytes([i % 256]) * 8, ref)))
    return out


def grouped(items, exact=True):
    """The buckets as a shuffle of one record per band and entry found them (exact: of each fingerprint only the
    survivor, highest karma then smallest doc_id, as exact dedup keeps it)."""
    buckets = {}
    for fp, e in items:
        for band, key in enumerate(np.frombuffer(e.keys, dtype="<u8").tolist()):
            buckets.setdefault((band, key), set()).add(((e.doc_id, e.karma), e.ref or e.sig, fp))
    out = set()
    for k, members in buckets.items():
        if exact:
            best = {fp: min((m for m, _, f in members if f == fp), key=lambda m: (-m[1], m[0])) for _, _, fp in members}
            members = {(m, s, fp) for m, s, fp in members if best[fp] == m}
        if len({m for m, _, _ in members}) >= 2:
            out |= {(k, (m, s)) for m, s, _ in members}
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 5), min_size=BANDS, max_size=BANDS), min_size=n, max_size=n),
    st.lists(st.integers(1, n), min_size=1, max_size=4),
    st.lists(st.integers(0, 3), min_size=n, max_size=n), st.booleans())))
def test_band_files_give_the_candidates_of_grouping_every_band_record(tmp_path_factory, drawn):
    keys, cuts, fingerprints, exact = drawn
    items = entries(keys, len(keys), fingerprints)
    directory = str(tmp_path_factory.mktemp("bands"))
    bounds = sorted({0, len(items), *cuts})
    paths = [bands.write(directory, items[a:b], BANDS) for a, b in zip(bounds, bounds[1:]) if b > a]
    found = [c for band in range(BANDS) for c in bands.band_candidates(paths + paths[:1], band, exact=exact)]
    assert set(found) == grouped(items, exact) and len(set(found)) == len(found)   # a file listed twice: once


def test_a_retried_bundle_finds_its_file_and_only_band_files_are_removed(tmp_path):
    items = entries([[1, 2, 3], [1, 5, 6], [7, 2, 9]], 3)
    first = bands.write(str(tmp_path / "b"), items, BANDS)
    assert bands.write(str(tmp_path / "b"), items, BANDS) == first and len(os.listdir(tmp_path / "b")) == 1
    (tmp_path / "b" / "notes.arrow").write_text("a user's file")
    bands.remove(str(tmp_path / "b"))
    assert os.listdir(tmp_path / "b") == ["notes.arrow"]
    os.unlink(tmp_path / "b" / "notes.arrow")
    bands.write(str(tmp_path / "b"), items, BANDS)
    bands.remove(str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()


def test_the_pipeline_step_finds_the_buckets_and_leaves_no_band_file(tmp_path):
    items = entries([[1, 2, 3], [1, 5, 6], [7, 2, 9], [8, 8, 8]], 4)
    directory = str(tmp_path / ".webtext-bands")
    with beam_pipeline() as p:
        found = p | beam.Create(items) | bands.BandCandidates(directory, BANDS)
        _ = found | beam.combiners.ToList() | beam.Map(_check, grouped(items))
    assert not os.path.exists(directory)


def _check(found, expected):
    assert set(found) == expected and len(found) == len(expected), (found, expected)
