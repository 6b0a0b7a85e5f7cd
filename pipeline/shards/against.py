"""`webtext shards dedup-against DIR OTHER`: the documents of one corpus that are duplicates of another's.

    webtext shards dedup-against DIR OTHER [--threshold T] [--include-dropped] [--json OUT.json]
    webtext shards dedup-against DIR OTHER --remove --out NEW_DIR

Both corpora's sketch indexes (dedup/index.py, written by `webtext run` beside the shards) are compared, never
their text: a document of DIR (one in its shards: kept in its index) is an exact duplicate of a document of OTHER
when their normalized texts' fingerprints are equal, a near duplicate when their MinHash signatures share an LSH
band and the share of equal signature values (the estimated Jaccard similarity of their word 5-gram sets) is at
least T (default: the threshold the indexes were made with). A document of OTHER counts when OTHER keeps it (it
is in OTHER's shards); --include-dropped also counts those OTHER's own dedup removed. Both indexes must have been
made with the same dedup parameters (num_perm, seed, shingle size, threshold, banding).

Scale: OTHER's sorted band keys and fingerprints are memory-mapped; DIR's index is read in chunks of rows whose
band keys are looked up by one np.searchsorted per chunk, and the candidate pairs verified as one vectorized
comparison of signature matrices. Memory: one chunk of DIR plus OTHER's kept flags (one byte per document).

--remove writes a copy of DIR without the matched documents (pipeline/shards/rewrite.py; DIR is only read): they
are counted under stage "decontaminate", reasons "exact_duplicate_of_other" / "near_duplicate_of_other", and
listed in NEW_DIR/_drops/. A DIR grown with --add-to becomes one flat corpus there.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import files
from core.settings import UsageError
from dedup import index as sketch_index
from dedup.minhash import band_keys, sig_array
from pipeline.corpus import index_dirs

CHUNK = 4096              # DIR rows per lookup
PAIRS = 1 << 16           # candidate pairs verified at once: PAIRS x signature values, ~32 MB at 128 values
KINDS = ("exact", "near")


class Pair(NamedTuple):
    doc_id: str           # DIR's document
    other: str            # OTHER's document
    similarity: float
    kind: str             # "exact" | "near"


# ------------------------------------------------------------------------------------------------ indexes
def open_indexes(corpus: str, name: str) -> List[sketch_index.SketchIndex]:
    """A corpus's generations' indexes, or one line saying why there are none and what to do."""
    missing = [d for d in index_dirs(corpus) if not sketch_index.exists(d)]
    if missing:
        raise UsageError(f"{name} {corpus} has no sketch index ({missing[0]}/{sketch_index.SKETCHES} is missing: "
                         f"built by an older webtext or without dedup); build it from its shards with "
                         f"`webtext shards index {corpus}`, or rerun its `webtext run` command")
    return [sketch_index.SketchIndex(d) for d in index_dirs(corpus)]


def common_params(dirs: List[sketch_index.SketchIndex], others: List[sketch_index.SketchIndex]) -> dict:
    """The dedup parameters every index shares; one line naming what differs otherwise."""
    first = dirs[0].params
    for ix, side in [(x, "DIR") for x in dirs] + [(x, "OTHER") for x in others]:
        differs = [f"{k} {first.get(k)} (DIR) vs {ix.params.get(k)} ({side})" for k in sketch_index.PARAMS
                   if ix.params.get(k) != first.get(k)]
        if differs:
            raise UsageError(f"the two corpora's sketch indexes were made with other dedup settings "
                             f"({', '.join(differs)}): their signatures cannot be compared; rebuild one with the "
                             f"other's [dedup] settings")
    return first


class Sigs:
    """One index's signature column as a gatherable matrix, without copying it (memory-mapped where local)."""

    def __init__(self, ix: sketch_index.SketchIndex, width: int):
        self.width = width
        self.parts, starts = [], [0]
        for chunk in ix.table.column("sig").chunks:
            offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
            data = chunk.buffers()[2]
            self.parts.append((offsets, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)))
            starts.append(starts[-1] + len(chunk))
        self.starts = np.array(starts, np.int64)

    def take(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(len(rows), width) uint32 signatures and a mask of the rows that have a full one."""
        out = np.zeros((len(rows), self.width), np.uint32)
        ok = np.zeros(len(rows), bool)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        nbytes = 4 * self.width
        for p in np.unique(part):
            sel = np.nonzero(part == p)[0]
            offsets, data = self.parts[p]
            local = rows[sel] - self.starts[p]
            start, end = offsets[local].astype(np.int64), offsets[local + 1].astype(np.int64)
            full = end - start == nbytes
            idx = start[full, None] + np.arange(nbytes)
            out[sel[full]] = data[idx].view("<u4").reshape(-1, self.width)
            ok[sel[full]] = True
        return out, ok


def _ranges(lo: np.ndarray, hi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(query index, position) for every position in [lo[i], hi[i]): the hits of a vectorized searchsorted."""
    counts = (hi - lo).astype(np.int64)
    query = np.repeat(np.arange(len(lo)), counts)
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    return query, pos.astype(np.int64)


class Other:
    """One generation of OTHER, opened for lookups."""

    def __init__(self, ix: sketch_index.SketchIndex, width: int, include_dropped: bool):
        self.ix = ix
        self.sigs = Sigs(ix, width)
        self.counts = ix.table.column("kept").to_numpy(zero_copy_only=False) if not include_dropped else \
            np.ones(len(ix), bool)
        self.doc_id = ix.table.column("doc_id")
        self.fp = ix.table.column("fingerprint")

    def exact(self, fps: List[str]) -> List[Tuple[int, int]]:
        """(query, row) of every counted row whose fingerprint equals a query's."""
        q = sketch_index.fp_key(fps)
        query, pos = _ranges(np.searchsorted(self.ix.fp_keys, q, "left"), np.searchsorted(self.ix.fp_keys, q, "right"))
        rows = np.asarray(self.ix.fp_rows[pos], np.int64)
        keep = self.counts[rows] if len(rows) else np.zeros(0, bool)
        query, rows = query[keep], rows[keep]
        theirs = self.fp.take(pa.array(rows)).to_pylist() if len(rows) else []
        return [(int(i), int(r)) for i, r, f in zip(query, rows, theirs) if f == fps[i] and f]

    def near(self, keys: np.ndarray, has: np.ndarray, mine: np.ndarray, threshold: float):
        """(query, row, similarity) of counted rows sharing a band with a query and similar enough, each pair once.
        keys: (n, bands) mixed band keys; has: rows with a signature; mine: (n, width) signatures."""
        if not len(self.ix):
            return
        flat = keys[has].ravel()
        owner = np.nonzero(has)[0][np.arange(len(flat)) // keys.shape[1]]
        lo = np.searchsorted(self.ix.band_keys, flat, "left")
        hi = np.searchsorted(self.ix.band_keys, flat, "right")
        ends = np.cumsum(hi - lo)
        seen, a = set(), 0
        while a < len(flat):      # keys in groups of <= PAIRS hits: a huge bucket does not blow up the temporaries
            done = ends[a - 1] if a else 0
            b = max(a + 1, int(np.searchsorted(ends, done + PAIRS, "right")))
            query, pos = _ranges(lo[a:b], hi[a:b])
            query, rows = owner[a:b][query], np.asarray(self.ix.band_rows[pos], np.int64)
            pairs = np.unique(query * len(self.ix) + rows)       # a pair sharing several bands is one pair
            query, rows = pairs // len(self.ix), pairs % len(self.ix)
            keep = self.counts[rows]
            query, rows = query[keep], rows[keep]
            for c in range(0, len(rows), PAIRS):
                q, r = query[c:c + PAIRS], rows[c:c + PAIRS]
                theirs, ok = self.sigs.take(r)
                sim = (mine[q] == theirs).mean(axis=1)
                hit = ok & (sim >= threshold)
                for i, row, x in zip(q[hit].tolist(), r[hit].tolist(), sim[hit].tolist()):
                    if (i, row) not in seen:
                        seen.add((i, row))
                        yield i, row, x
            a = b


def find_pairs(dirs, others: List[Other], params: dict, threshold: float, bar) -> Dict[str, List[Pair]]:
    """DIR's kept documents' matches in OTHER: doc_id -> its pairs (an exact pair is not listed again as near)."""
    bands, rows = params["bands"], params["rows"]
    width = others[0].sigs.width if others else 0
    found: Dict[str, List[Pair]] = {}
    for ix in dirs:
        kept = ix.table.column("kept")
        for start in range(0, len(ix), CHUNK):
            n = min(CHUNK, len(ix) - start)
            mask = kept.slice(start, n).to_numpy(zero_copy_only=False)
            chunk = ix.table.slice(start, n).filter(pa.array(mask))
            ids = chunk.column("doc_id").to_pylist()
            fps = chunk.column("fingerprint").to_pylist()
            sigs = chunk.column("sig").to_pylist()
            has = np.array([len(s) == 4 * width and width >= bands * rows for s in sigs], bool)
            mine = np.zeros((len(ids), width), np.uint32)
            keys = np.zeros((len(ids), bands), np.uint64)
            for i in np.nonzero(has)[0]:
                mine[i] = sig_array(sigs[i])
                keys[i] = [h for _, h in band_keys(mine[i], bands, rows)]
            keys = sketch_index.mixed_keys(keys)
            for o in others:
                exact = set()
                for i, r in o.exact(fps):
                    exact.add((i, r))
                    found.setdefault(ids[i], []).append(Pair(ids[i], o.doc_id[r].as_py(), 1.0, "exact"))
                for i, r, sim in o.near(keys, has, mine, threshold):
                    if (i, r) not in exact:
                        found.setdefault(ids[i], []).append(Pair(ids[i], o.doc_id[r].as_py(), sim, "near"))
            bar.update(n)
    return found


def kind_of(pairs: List[Pair]) -> str:
    return "exact" if any(p.kind == "exact" for p in pairs) else "near"


# ------------------------------------------------------------------------------------------------ report
def locate(data_dir: str, manifest: dict, ids: set) -> Dict[str, Tuple[str, str, int]]:
    """doc_id -> (url, split, tokens) of the given documents, by one pass over the shards' doc_id columns."""
    from pipeline.shards.browse import open_table, select

    where, wanted = {}, pa.array(sorted(ids), pa.string())
    for e in select(manifest, "all"):
        table = open_table(data_dir, e)
        hit = pc.is_in(table.column("doc_id"), value_set=wanted)
        if not pc.any(hit).as_py():
            continue
        rows = table.filter(hit)
        lengths = pc.list_value_length(rows.column("tokens")).to_pylist()
        for doc_id, url, n in zip(rows.column("doc_id").to_pylist(), rows.column("url").to_pylist(), lengths):
            where[doc_id] = (url, e["split"], n)
    return where


def summarize(manifest: dict, found: Dict[str, List[Pair]], where: dict) -> dict:
    totals = {split: dict(docs=t["docs"], tokens=t["tokens"]) for split, t in manifest["totals"].items()}
    totals["all"] = {k: sum(t[k] for s, t in totals.items() if s != "all") for k in ("docs", "tokens")}
    counts = {kind: {split: {"docs": 0, "tokens": 0} for split in totals} for kind in (*KINDS, "either")}
    for doc_id, pairs in found.items():
        if doc_id not in where:
            continue
        _, split, n = where[doc_id]
        for kind in (kind_of(pairs), "either"):
            for s in (split, "all"):
                counts[kind][s]["docs"] += 1
                counts[kind][s]["tokens"] += n
    for kind in counts.values():
        for split, c in kind.items():
            c["share_docs"] = c["docs"] / max(totals[split]["docs"], 1)
            c["share_tokens"] = c["tokens"] / max(totals[split]["tokens"], 1)
    return {"totals": totals, "counts": counts}


def print_summary(args, summary: dict, threshold: float, n_other: int) -> None:
    t = summary["totals"]["all"]
    print(f"dedup-against: {args.dir} ({t['docs']:,} docs, {t['tokens']:,} tokens) vs {args.other} "
          f"({n_other:,} {'documents incl. dropped' if args.include_dropped else 'kept documents'}); "
          f"near = a shared LSH band and estimated Jaccard >= {threshold:g}")
    splits = [s for s in summary["totals"] if s != "all"]
    print(f"{'kind':<8}" + "".join(f"{s + ' docs':>12}" for s in splits) +
          f"{'docs':>12}{'% docs':>9}{'tokens':>15}{'% tokens':>10}")
    for kind, c in summary["counts"].items():
        a = c["all"]
        print(f"{kind:<8}" + "".join(f"{c[s]['docs']:>12,}" for s in splits) +
              f"{a['docs']:>12,}{100 * a['share_docs']:>8.2f}%{a['tokens']:>15,}{100 * a['share_tokens']:>9.2f}%")


# ------------------------------------------------------------------------------------------------ command
def cmd_dedup_against(args) -> int:
    from pipeline.shards.browse import load_manifest, progress
    from pipeline.shards.rewrite import check_out, copy_without

    manifest = load_manifest(args.dir)
    load_manifest(args.other)
    if files.is_local(args.dir) and files.is_local(args.other) and \
            os.path.realpath(args.dir.removeprefix("file://")) == os.path.realpath(args.other.removeprefix("file://")):
        raise UsageError("OTHER is DIR itself: every document would match itself; give another corpus")
    out = check_out(args.dir, args.out) if args.remove else None
    dirs, other_ix = open_indexes(args.dir, "DIR"), open_indexes(args.other, "OTHER")
    params = common_params(dirs, other_ix)
    threshold = params["threshold"] if args.threshold is None else args.threshold
    width = max(params["num_perm"], params["bands"] * params["rows"])
    others = [Other(ix, width, args.include_dropped) for ix in other_ix]
    n_other = sum(int(o.counts.sum()) for o in others)
    with progress(sum(len(ix) for ix in dirs), "doc", args.quiet) as bar:
        found = find_pairs(dirs, others, params, threshold, bar)
    where = locate(args.dir, manifest, set(found))
    found = {d: p for d, p in found.items() if d in where}     # documents of DIR are those in its shards
    summary = summarize(manifest, found, where)
    print_summary(args, summary, threshold, n_other)
    if args.json:
        pairs = [dict(doc_id=p.doc_id, url=where[p.doc_id][0], split=where[p.doc_id][1], other_doc_id=p.other,
                      similarity=round(p.similarity, 6), kind=p.kind)
                 for d in sorted(found) for p in sorted(found[d], key=lambda p: (p.kind, p.other))]
        report = {"dir": str(args.dir), "other": str(args.other), "threshold": threshold, "params": params,
                  "other_documents": "kept and dropped" if args.include_dropped else "kept", **summary,
                  "pairs": pairs}
        files.write_atomic(Path(args.json), (json.dumps(report, indent=2) + "\n").encode())
    if out is not None:
        def verdicts(e, rows, bar):
            bar.update(e["tokens"])
            result = []
            for row in rows:
                pairs = found.get(row["doc_id"])
                if not pairs:
                    result.append(None)
                    continue
                kind = kind_of(pairs)
                best = max((p for p in pairs if p.kind == kind), key=lambda p: (p.similarity, p.other))
                result.append((f"{kind}_duplicate_of_other",
                               f"{kind} duplicate of {best.other} in {args.other} (similarity {best.similarity:.3f})"))
            return result

        kept, dropped = copy_without(args.dir, manifest, out, verdicts,
                                     {"against": str(args.other), "threshold": threshold,
                                      "other_documents": "kept and dropped" if args.include_dropped else "kept"},
                                     args.quiet)
        what = ", ".join(f"{n:,} under reason {r}" for r, n in sorted(dropped.items())) or "none"
        print(f"decontaminate: kept {kept:,} of {kept + sum(dropped.values()):,} docs; dropped {what}; wrote {out}")
    return 0


def add_parser(sub, common) -> None:
    """The `dedup-against` subcommand of `webtext shards`."""
    p = sub.add_parser("dedup-against", parents=[common], help="documents of DIR that duplicate OTHER's",
                       description="Exact and near duplicates of another webtext corpus's documents, from both "
                                   "sketch indexes (no text is read). Only OTHER's kept documents count unless "
                                   "--include-dropped. A DIR grown with --add-to becomes one flat corpus in the "
                                   "--remove copy.")
    p.add_argument("dir", metavar="DIR", help="the corpus to check (the --out of `webtext run`)")
    p.add_argument("other", metavar="OTHER", help="another webtext corpus, e.g. an eval set built the same way")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="estimated Jaccard for a near duplicate (default: the indexes' own dedup threshold; the LSH "
                        "bands are tuned for that one: below it they miss a growing share of the pairs)")
    p.add_argument("--include-dropped", action="store_true",
                   help="also count OTHER's documents its own dedup removed (default: only the ones in its shards)")
    p.add_argument("--json", metavar="OUT.json", help="also write the counts and every matched pair as JSON")
    p.add_argument("--remove", action="store_true", help="write a copy of DIR without the matched documents")
    p.add_argument("--out", metavar="NEW_DIR", help="with --remove: the new shard directory (DIR is not changed)")
    p.set_defaults(func=_checked)


def _checked(args) -> int:
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.remove and not args.out:
        raise UsageError("--remove needs --out NEW_DIR (the shards are rewritten, never changed in place)")
    if args.out and not args.remove:
        raise UsageError("--out is for --remove; without it dedup-against only reports (use --json FILE for pairs)")
    return cmd_dedup_against(args)
