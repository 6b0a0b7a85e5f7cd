"""The URL index of a corpus: every outbound link a generation of it fetched, so a later month never fetches a link
again (whatever its outcome was: a page kept, dropped, or a dead link).

Stored per generation as `urls.npy` beside its sketch index (dedup/index.py): the sorted, unique 64-bit doc_ids
(core.records.doc_id_for of the normalized URL), 8 bytes per link, memory-mapped for lookups. While a run goes,
RecordLinks writes the links it is about to fetch as part files (named by their content, whole or nothing) into
a folder of its own; `merge` turns them into `urls.npy` once the run has finished.
"""
from __future__ import annotations

import hashlib
import io
from typing import Iterable, List, Sequence

import apache_beam as beam
import numpy as np

from core import files
from core.records import FETCH, Step, doc_id_for

URLS = "urls.npy"
IN_CORPUS = "already_in_corpus"   # fetch drop: the corpus fetched this link in an earlier generation


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def link_key(url: str) -> int:
    return int(doc_id_for(url), 16)


class RecordLinks(beam.DoFn):
    """Links -> nothing; their doc_ids written to `parts_dir` once per bundle (a retried bundle writes the same
    ids again: the merge keeps each once)."""

    def __init__(self, parts_dir: str):
        self.parts_dir = parts_dir

    def start_bundle(self):
        self.ids: List[int] = []

    def process(self, link):   # a Link (not annotated: Beam 2.78 checks it against HarvestLinks' tagged output)
        self.ids.append(link_key(link.url))
        return []

    def finish_bundle(self):
        if self.ids:
            data = _npy_bytes(np.unique(np.array(self.ids, dtype=np.uint64)))
            name = hashlib.blake2b(data, digest_size=10).hexdigest()
            path = files.join(self.parts_dir, f"{name}.npy")
            if not files.exists(path):
                files.write_atomic(path, data)
        self.ids = []


def _load(path: str) -> np.ndarray:
    if files.is_local(path):
        return np.load(path.removeprefix("file://"), mmap_mode="r", allow_pickle=False)
    return np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False)


def merge(parts_dir: str, directory: str, doc_keys: np.ndarray) -> int:
    """The part files of `parts_dir`, plus the links of the documents the generation extracted, as their doc_ids'
    64-bit keys (dedup/index.py id_keys; their links were fetched even where no part file recorded them, e.g. a run
    from WARCs or by an older webtext) -> `directory`/urls.npy (sorted, unique). Returns the number of links."""
    parts = [np.asarray(_load(p)) for p in files.match(files.join(parts_dir, "*.npy"))]
    parts.append(np.asarray(doc_keys, dtype=np.uint64))
    ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
    files.write_atomic(files.join(directory, URLS), _npy_bytes(ids.astype(np.uint64)))
    return len(ids)


class SeenLinks:
    """The URL indexes of a corpus's generations, opened for lookups."""

    def __init__(self, directories: Sequence[str]):
        self.arrays = [_load(files.join(d, URLS)) for d in directories if files.exists(files.join(d, URLS))]

    def __len__(self) -> int:
        return sum(len(a) for a in self.arrays)

    def __contains__(self, url: str) -> bool:
        key = np.uint64(link_key(url))
        for a in self.arrays:
            i = int(np.searchsorted(a, key))
            if i < len(a) and a[i] == key:
                return True
        return False


class NotInCorpus(Step):
    """Links -> the links the corpus has not fetched yet; the others are fetch drops `already_in_corpus` (counted
    as fetch `in` here, so that fetch's in == out + drops still holds: FetchPages never sees them)."""
    stage = FETCH

    def __init__(self, directories: Iterable[str]):
        super().__init__()
        self.directories = tuple(directories)

    def setup(self):
        self.seen = SeenLinks(self.directories)

    def process(self, link):   # a Link
        if link.url in self.seen:
            self.count("in")
            yield from self.emit(self.drop(IN_CORPUS, link.url))
        else:
            yield link
