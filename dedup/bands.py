"""LSH buckets found on disk: every sketch's band keys are written once to band files, and each band's buckets are
found by sorting that band's keys, instead of a shuffle of one record per band and document.

Why: the band records were the largest thing the local runner held at the end of a run (13 per document, ~20 B
each as gathered bytes and held two or three times while grouped: ~26 MB of chunks at 10^5 documents, ~2 GB at
WebText's 8M, times the copies). A sort of one band's 64-bit keys holds ~24 bytes per document (keys, order) for
one band at a time, in the task that handles that band, wherever the runner runs it.

    sketches -> WriteBandFiles: a bundle's entries, every <= max_docs, as one band file      paths only go on
             -> AllBandFiles (one list) -> one task per band (Reshuffle: spread over workers)
             -> Candidates: that band's keys of every file, sorted; runs of equal keys with two or more
                members are the candidate buckets: (bucket key, (member, signature or payload ref)) per member
             -> (when every band is done) RemoveBandFiles

A band file is an Arrow IPC file `<scratch>/bands-<hash of its bytes>.arrow`, one record batch:
    doc_id string | karma int64 | sig binary (the signature, where no payload file holds it) |
    ref string (where the payload file holds it, core/payloads.py) | fingerprint string (exact-dedup's) |
    b0 .. b<bands-1> uint64 (the band keys)
Every document is written, exact duplicates too: a copy has its survivor's signature, so it is in all of its
buckets, and a bucket keeps one member per fingerprint, the one the survivor rule picks (the exact survivor), when
exact dedup runs: the candidates are those of the exact survivors alone, and the exact shuffle needs no band keys.
Written whole or not at all (core.files), named by its bytes so that a retried bundle finds its file; only
paths a committed bundle sent on are read. The scratch folder is the run's `.webtext-bands/` (files matching NAME
in it are ours to remove) or a temporary folder where no run folder is given.
"""
from __future__ import annotations

import hashlib
import re
import tempfile
from typing import Iterable, List, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files
from dedup.minhash import Entry
from dedup.survivor import survivor_key

BANDS_DIR = ".webtext-bands"
NAME = re.compile(r"bands-[0-9a-f]{20}\.arrow")


def scratch_dir(out_dir: str | None = None) -> str:
    """Where band files go: the run's `.webtext-bands/`, or a fresh local temporary folder."""
    return files.join(out_dir, BANDS_DIR) if out_dir else tempfile.mkdtemp(prefix="webtext-bands-")


def _schema(bands: int) -> pa.Schema:
    return pa.schema([pa.field("doc_id", pa.string(), nullable=False), pa.field("karma", pa.int64(), nullable=False),
                      pa.field("sig", pa.binary(), nullable=False), pa.field("ref", pa.string(), nullable=False),
                      pa.field("fingerprint", pa.string(), nullable=False)]
                     + [pa.field(f"b{b}", pa.uint64(), nullable=False) for b in range(bands)])


def encode(keyed: List[Tuple[str, Entry]], bands: int) -> pa.Buffer:
    """(fingerprint, Entry) pairs (each with `bands` band keys) -> one band file's bytes."""
    entries = [e for _, e in keyed]
    keys = np.frombuffer(b"".join(e.keys for e in entries), dtype="<u8").reshape(len(entries), bands)
    columns = [pa.array([e.doc_id for e in entries], pa.string()),
               pa.array([int(e.karma) for e in entries], pa.int64()),
               pa.array([e.sig for e in entries], pa.binary()), pa.array([e.ref for e in entries], pa.string()),
               pa.array([fp for fp, _ in keyed], pa.string())]
    columns += [pa.array(np.ascontiguousarray(keys[:, b]), pa.uint64()) for b in range(bands)]
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, _schema(bands)) as writer:
        writer.write_batch(pa.record_batch(columns, schema=_schema(bands)))
    return sink.getvalue()


def write(directory: str, keyed: List[Tuple[str, Entry]], bands: int) -> str:
    """One band file (whole or nothing); its path. Same entries -> same name, written once."""
    data = encode(keyed, bands)
    path = files.join(directory, f"bands-{hashlib.blake2b(data, digest_size=10).hexdigest()}.arrow")
    files.write_once(path, data)
    return path


class WriteBandFiles(beam.DoFn):
    """(fingerprint, Entry) pairs -> paths of the band files that hold them (a text without words has no band
    keys: not written)."""

    # a bundle of the extraction stage lasts as long as the fetch: what waits for its file stays small (~3 MB)
    def __init__(self, directory: str, bands: int, max_docs: int = 1 << 13):
        self.directory, self.bands, self.max_docs = directory, bands, max_docs

    def start_bundle(self):
        self.pending = []

    def process(self, keyed: Tuple[str, Entry]):
        if len(keyed[1].keys) == 8 * self.bands:
            self.pending.append(keyed)
            if len(self.pending) >= self.max_docs:
                yield self._flush()

    def finish_bundle(self):
        if self.pending:
            yield GlobalWindows.windowed_value(self._flush())

    def _flush(self) -> str:
        entries, self.pending = self.pending, []
        return write(self.directory, entries, self.bands)


def band_candidates(paths: Iterable[str], band: int, with_sig: bool = True, exact: bool = True) -> List[Tuple]:
    """One band's candidate buckets over every band file: ((band, key), ((doc_id, karma), signature bytes or
    payload ref)) per distinct member of each key that two or more distinct members share; with `exact`, of each
    fingerprint's members only the exact survivor counts. Holds the band's keys and their sort order (~24 bytes per
    document at most); the other columns are read for candidates only."""
    paths, keys = sorted(set(paths)), []
    for path in paths:   # one file open at a time (thousands at WebText size): only this band's column is kept
        keys.append(files.read_arrow(path).column(f"b{band}").to_numpy().copy())
    first = np.cumsum([0] + [len(k) for k in keys])
    keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    del keys
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    lengths = np.diff(np.append(starts, len(ordered)))
    shared = np.repeat(lengths >= 2, lengths)            # positions inside a run of two or more equal keys
    rows, bucket_keys = order[shared], ordered[shared]
    del order, ordered
    which = np.searchsorted(first, rows, side="right") - 1
    buckets: dict = {}
    for f in np.unique(which):                           # the files that hold candidates, again one at a time
        picked = which == f
        t = files.read_arrow(paths[f]).take(pa.array(rows[picked] - first[f]))
        for doc_id, karma, sig, ref, fp, key in zip(
                t.column("doc_id").to_pylist(), t.column("karma").to_pylist(), t.column("sig").to_pylist(),
                t.column("ref").to_pylist(), t.column("fingerprint").to_pylist(), bucket_keys[picked].tolist()):
            buckets.setdefault(key, set()).add(((doc_id, karma), (ref or sig) if with_sig else b"", fp))
    out = []
    for key in sorted(buckets):
        members = buckets[key]
        if exact:
            survivors = {}
            for m, _, fp in members:
                if fp not in survivors or survivor_key(m) < survivor_key(survivors[fp]):
                    survivors[fp] = m
            members = {(m, s, fp) for m, s, fp in members if survivors[fp] == m}
        if len({m for m, _, _ in members}) >= 2:         # one document listed twice is not a candidate pair
            out += sorted({((band, key), (m, s)) for m, s, _ in members}, key=lambda c: (c[1][0], str(c[1][1])))
    return out


def remove(directory: str) -> None:
    """The band files in `directory` (this run's, and any a killed run left); the folder too once it is empty.
    Anything not named like a band file stays."""
    files.delete([p for p in files.match(files.join(directory, "*.arrow")) if NAME.fullmatch(p.rsplit("/", 1)[-1])])
    files.remove_empty_dir(directory)


class BandCandidates(beam.PTransform):
    """(fingerprint, Entry) pairs -> (bucket key, (member, signature or payload ref)) per member of every LSH
    bucket of two or more documents (of exact survivors, with `exact`; the signature left out where candidates are
    not verified)."""

    def __init__(self, directory: str, bands: int, with_sig: bool = True, exact: bool = True):
        super().__init__()
        self.directory, self.bands, self.with_sig, self.exact = directory, bands, with_sig, exact

    def expand(self, entries):
        paths = (entries
                 | "WriteBandFiles" >> beam.ParDo(WriteBandFiles(self.directory, self.bands))
                 | "AllBandFiles" >> beam.combiners.ToList())
        found = (paths
                 | "PerBand" >> beam.FlatMap(lambda ps, n: [(b, ps) for b in range(n)], self.bands)
                 | "SpreadBands" >> beam.Reshuffle()
                 | "Candidates" >> beam.ParDo(_Candidates(self.with_sig, self.exact)).with_outputs(
                     _DONE, main="candidates"))
        _ = (found[_DONE]
             | "BandsDone" >> beam.combiners.Count.Globally()
             | "RemoveBandFiles" >> beam.Map(lambda _, d: remove(d), self.directory))
        return found.candidates


_DONE = "done"


class _Candidates(beam.DoFn):
    def __init__(self, with_sig: bool, exact: bool):
        self.with_sig, self.exact = with_sig, exact

    def process(self, task):
        band, paths = task
        yield from band_candidates(paths, band, self.with_sig, self.exact)
        yield beam.pvalue.TaggedOutput(_DONE, band)
