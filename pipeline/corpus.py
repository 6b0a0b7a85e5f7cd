"""A corpus that grows: `webtext run --input RS_2019-02.zst --add-to corpus/` adds a month to a corpus already built.

    corpus/manifest.json              every generation's shards (one corpus for verify, the trainer, the exports),
                                      and `generations`: what each one added, from which inputs, with its stats
    corpus/data/*.arrow               generation 0's shards; generation k's are data/{split}-g{k:05d}-*.arrow
    corpus/_index/<k:05d>/            generation k's URL index (crawl/seen.py) and sketch index (dedup/index.py)
    corpus/_generations/<k:05d>/      generation k's run: run.json, stats.json, _drops/, _payloads/ (what a
                                      rerun of the same command reuses); its shards wait in data/ here until
                                      they are committed

An addition fetches only links no generation fetched (fetch drop `already_in_corpus`), removes new documents
that are exact or near duplicates of any document the corpus ever deduplicated, or of each other, and writes
the survivors as a new generation. Survivor rule: a document already in the corpus is never removed (trainers may
have read it); between new documents, the usual one (highest karma, then smallest doc_id). A single build of both
months with `dedup.prefer_first_seen_before` set to the start of the later month keeps the same documents
(tests/test_corpus_grow.py), except where a new document joins two old ones that were not duplicates of each
other: the single build keeps one of them, the corpus keeps both.

The commit is the manifest: the new shards are moved into data/ under names no other generation uses, then
manifest.json is replaced atomically. Killed before, the corpus is what it was (the rerun of the same command
reuses the generation's work and commits it); killed after, the generation is in.
"""
from __future__ import annotations

import contextlib
import os
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import pyarrow as pa

from core import files, payloads
from core import shard_format as shards
from core.settings import UsageError
from crawl import seen
from dedup import index as sketch_index
from dedup.config import DedupConfig
from pipeline import outdir

GENERATIONS_DIR = "_generations"
LINK_PARTS = ".webtext-links"      # a run's RecordLinks part files, merged into the URL index at its end


class Addition(NamedTuple):
    """Where an addition's run goes and what it deduplicates against."""
    corpus: str
    generation: int
    run_dir: str
    index_dirs: Tuple[str, ...]    # every earlier generation's _index folder


class AlreadyAdded(Exception):
    """This job is already a generation of the corpus: nothing to do."""


def run_dir_of(corpus: str, generation: int) -> str:
    return os.path.join(corpus, GENERATIONS_DIR, f"{generation:05d}")


def generations_of(manifest: dict) -> List[dict]:
    """The manifest's generations; a corpus built once has one, generation 0, described by its config/stats."""
    return manifest.get("generations") or [{"generation": 0, "job": outdir.job_of(manifest.get("config") or {}),
                                            "stats": manifest.get("stats") or {}}]


def index_dirs(corpus: str) -> Tuple[str, ...]:
    """The sketch/URL index folders of the corpus's committed generations, oldest first."""
    return tuple(sketch_index.generation_dir(corpus, g["generation"])
                 for g in generations_of(shards.read_manifest(corpus)))


def _dedup_of(config: dict) -> DedupConfig:
    values = dict((config or {}).get("dedup") or {})
    fields = set(DedupConfig.__dataclass_fields__)
    return DedupConfig(**{k: v for k, v in values.items() if k in fields})


def prepare(corpus: str, cfg, job: dict, overwrite: bool, echo=print) -> Addition:
    """Check that `corpus` can take this addition, lock it, claim the generation's run folder. Raises UsageError
    (one line), or AlreadyAdded when this job is already in."""
    if not files.is_local(corpus):
        raise UsageError("--add-to needs a local corpus directory (the manifest is replaced by an atomic rename)")
    corpus = corpus.removeprefix("file://")
    if not os.path.isfile(os.path.join(corpus, shards.MANIFEST)):
        raise UsageError(f"--add-to {corpus} holds no webtext corpus (no {shards.MANIFEST}); build it first with "
                         f"webtext run --input ... --out {corpus}")
    outdir.lock(corpus)                 # one writer of the corpus at a time; held until the process ends
    manifest = shards.read_manifest(corpus)
    if manifest.get("format_version", 1) > shards.FORMAT_VERSION:
        raise UsageError(f"{corpus} was written by a newer webtext (format {manifest['format_version']}); upgrade")
    gens = generations_of(manifest)
    for g in gens:
        if g.get("job") == job:
            raise AlreadyAdded(f"{corpus} already holds this job as generation {g['generation']}: nothing to add")
    differs = [f"{k}: {v}" for k, v in _params_differ(_dedup_of(manifest.get("config")), cfg.dedup)]
    if differs:
        raise UsageError(f"the corpus was deduplicated with other settings ({', '.join(differs)}); use its "
                         "[dedup] settings for the addition")
    generation = max(g["generation"] for g in gens) + 1
    index_dirs = tuple(sketch_index.generation_dir(corpus, g["generation"]) for g in gens)
    missing = [d for d in index_dirs if not sketch_index.exists(d)]
    if missing:
        _index_generation_zero(corpus, manifest, echo)
    run_dir = run_dir_of(corpus, generation)
    previous = (outdir.read_json(os.path.join(run_dir, outdir.RUN_FILE)) or {}).get("job")
    if previous is not None and previous != job and not overwrite:
        raise UsageError(f"{run_dir} holds an unfinished addition of another job; rerun that command to finish it, "
                         "or pass --overwrite to replace it")
    outdir.claim(run_dir, job, overwrite=True)   # same job: resume; another: replaced (--overwrite, checked above)
    return Addition(corpus, generation, run_dir, index_dirs)


def _params_differ(old: DedupConfig, new: DedupConfig):
    a, b = sketch_index.params_of(old), sketch_index.params_of(new)
    return [(k, f"{a[k]} (corpus) vs {b[k]}") for k in sketch_index.PARAMS if a[k] != b[k]] + \
        [(k, f"{getattr(old, k)} (corpus) vs {getattr(new, k)}") for k in ("exact", "near")
         if getattr(old, k) != getattr(new, k)]


def _index_generation_zero(corpus: str, manifest: dict, echo) -> None:
    """A corpus built before corpora could grow has no index: build it from its payload files, once."""
    if not files.match(files.join(payloads.payload_dir(corpus), "*.arrow")):
        raise UsageError(f"{corpus} has no sketch index and no _payloads/ to build one from; rebuild it with "
                         "this version of webtext (a rerun of its command reuses its --warc-dir)")
    echo(f"building the sketch and URL index of {corpus} from its payload files (once; the links it fetched "
         "without keeping a page are not in it and may be fetched again)")
    index_generation(corpus, corpus, 0, _dedup_of(manifest.get("config")))


def index_generation(run_dir: str, corpus: str, generation: int, cfg: DedupConfig) -> int:
    """Write generation `generation`'s URL and sketch index from its run folder: every document its payload files
    hold (all that reached dedup), kept = in the shards its manifest lists; the links it recorded. Returns docs.
    Its ids are held as 64-bit keys in arrays (sketch_index.id_keys), not as Python strings: ~40 bytes a document
    besides what the index itself sorts, where sets and dicts of the ids took ~0.4 KB (at 8M documents, GBs)."""
    directory = sketch_index.generation_dir(corpus, generation)
    kept_ids, kept_karma = _kept(run_dir, generation)
    paths = sorted(files.match(files.join(payloads.payload_dir(run_dir), "*.arrow")))
    # A retried bundle can write a document into two payload files: its first row, in this order, is indexed.
    ids = [sketch_index.id_keys(payloads.read_doc_ids(path)) for path in paths]
    sizes = [len(a) for a in ids]
    ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    extracted, first = np.unique(ids, return_index=True)   # the documents that reached dedup: their links were fetched
    fresh = np.zeros(len(ids), dtype=bool)
    fresh[first] = True
    del first

    def tables():   # every document its payload files hold, once, with its karma and whether the shards kept it
        start = 0
        for path, size in zip(paths, sizes):
            mine, keys = fresh[start:start + size], ids[start:start + size]
            start += size
            if not mine.any():
                continue
            keys = keys[mine]
            at = np.minimum(np.searchsorted(kept_ids, keys), max(len(kept_ids) - 1, 0))
            kept = kept_ids[at] == keys if len(kept_ids) else np.zeros(len(keys), dtype=bool)
            karma = np.where(kept, kept_karma[at], 0) if len(kept_ids) else np.zeros(len(keys), np.int64)
            yield payloads.read_sketches(path).filter(pa.array(mine)).append_column(
                "karma", pa.array(karma, pa.int64())).append_column("kept", pa.array(kept, pa.bool_()))

    # built in a hidden folder and renamed: a kill leaves the earlier index folder or the new one, never a mix
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    earlier = files.set_aside(directory) if os.path.isdir(directory) else contextlib.nullcontext()
    with earlier, files.replacing_dir(directory) as tmp:
        docs = sketch_index.write(tmp, tables(), cfg, unique=True)
        seen.merge(files.join(run_dir, LINK_PARTS), tmp, extracted)
    _remove_link_parts(run_dir)
    return docs


def _kept(run_dir: str, generation: int) -> Tuple[np.ndarray, np.ndarray]:
    """The documents generation `generation`'s shards hold: (sorted id keys, their karma)."""
    ids, karma = [], []
    for s in shards.read_manifest(run_dir)["shards"]:
        if s.get("generation", 0) != generation:
            continue
        table = shards.open_shard(files.join(run_dir, s["name"])).select(["doc_id", "karma"])
        ids.append(sketch_index.id_keys(table.column("doc_id").to_pylist()))
        karma.append(table.column("karma").to_numpy().astype(np.int64))
    if not ids:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    ids, karma = np.concatenate(ids), np.concatenate(karma)
    order = np.argsort(ids, kind="stable")
    return ids[order], karma[order]


def _remove_link_parts(run_dir: str) -> None:
    parts = os.path.join(run_dir, LINK_PARTS)
    for name in os.listdir(parts) if os.path.isdir(parts) else []:
        if name.endswith(".npy"):
            os.unlink(os.path.join(parts, name))
    try:
        os.rmdir(parts)
    except OSError:
        pass


def commit(addition: Addition, job: dict, stats: dict) -> dict:
    """Move the generation's shards into the corpus's data/ and replace manifest.json: the one step that makes
    the addition visible, atomic (the rename of a complete file)."""
    corpus, g, run_dir = addition.corpus, addition.generation, addition.run_dir
    added = shards.read_manifest(run_dir)
    os.makedirs(os.path.join(corpus, shards.DATA_DIR), exist_ok=True)
    for s in added["shards"]:
        src, dst = os.path.join(run_dir, s["name"]), os.path.join(corpus, s["name"])
        if os.path.exists(src):          # a rerun after a kill between the moves and the manifest finds some moved
            os.replace(src, dst)
    files.fsync_dir(os.path.join(corpus, shards.DATA_DIR))
    try:
        os.rmdir(os.path.join(run_dir, shards.DATA_DIR))   # empty now; kept if anything else is in it
    except OSError:
        pass
    manifest = shards.read_manifest(corpus)
    gens = generations_of(manifest)
    gens = [x for x in gens if x["generation"] != g] + [{
        "generation": g, "job": job, "inputs": (job.get("run") or {}).get("inputs") or [],
        "docs": sum(t["docs"] for t in added["totals"].values()),
        "tokens": sum(t["tokens"] for t in added["totals"].values()),
        "shards": [s["name"] for s in added["shards"]], "stats": stats}]
    infos = [_info(s) for s in manifest["shards"] if s.get("generation", 0) != g] + \
            [_info(dict(s, generation=g)) for s in added["shards"]]
    return shards.write_manifest(corpus, infos, manifest.get("config") or {}, manifest.get("stats"), gens)


def _info(entry: dict) -> shards.ShardInfo:
    return shards.ShardInfo(*(entry[k] for k in shards.ShardInfo._fields[:-1]), generation=entry.get("generation", 0))


def describe(addition: Optional[Addition]) -> str:
    return "" if addition is None else f" (generation {addition.generation} of {addition.corpus})"
