"""A copy of a shard directory without some of its documents: what `shards overlap --remove` and
`shards dedup-against --remove` write. The source is only read; the copy's manifest keeps the source's config and
stats plus a stage "decontaminate" (in/out, dropped per reason), its _drops/ lists every removed document, and it
passes `webtext shards verify`.

A corpus grown with `webtext run --add-to` (several generations) becomes one flat corpus in the copy: its shards
are renumbered per split in manifest order (train-00000-of-N ...), and the copy lists no generations, since it
has neither their sketch indexes nor their run folders.
"""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from core import files
from core import shard_format as shards
from core.settings import UsageError
from pipeline.drops import DROPS_DIR
from pipeline.shards.assemble import write_shard

STAGE = "decontaminate"
# verdicts(shard entry, rows without tokens, progress bar) -> per row: None (keep) or (reason, detail)
Verdicts = Callable[[dict, List[dict], object], Sequence[Optional[Tuple[str, str]]]]


def check_out(data_dir: str, out: str) -> Path:
    """--out must be a new (or empty) directory beside an existing parent, never the source."""
    path = Path(out)
    if path.resolve() == Path(str(data_dir).removeprefix("file://")).resolve():
        raise UsageError("--out must be a new directory, not the shard directory itself")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"--out {path} already exists and is not empty; give a new directory")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: directory {path.parent} does not exist; create it first")
    return path


def _numbering(entries: List[dict]) -> dict:
    """name -> (index, num_shards) in the copy: the source's own, or per split in manifest order when the source
    has several generations (their shards share index numbers)."""
    if not any(e.get("generation", 0) for e in entries):
        return {e["name"]: (e["index"], e["num_shards"]) for e in entries}
    out = {}
    for split in shards.SPLITS:
        group = [e for e in entries if e["split"] == split]
        out.update({e["name"]: (i, len(group)) for i, e in enumerate(group)})
    return out


def copy_without(data_dir: str, manifest: dict, out: Path, verdicts: Verdicts, extra: dict,
                 quiet: bool) -> Tuple[int, Counter]:
    """Write every shard of `data_dir` into `out` without the rows `verdicts` names; then _drops/ and the manifest
    (last: a directory with manifest.json is whole). Returns (documents kept, dropped per reason)."""
    from pipeline.shards.browse import open_table, progress, select

    entries = select(manifest, "all")
    numbering = _numbering(entries)
    out.mkdir(exist_ok=True)
    infos, drops, dropped, kept = [], [], Counter(), 0
    with progress(sum(e["tokens"] for e in entries), "tok", quiet) as bar:
        for e in entries:
            table = open_table(data_dir, e)
            rows = table.drop_columns(["tokens"]).to_pylist()
            verdict = verdicts(e, rows, bar)
            tokens, offsets = shards.shard_tokens(files.join(str(data_dir), e["name"]))
            docs = []
            for i, row in enumerate(rows):
                if verdict[i] is not None:
                    reason, detail = verdict[i]
                    dropped[reason] += 1
                    drops.append({"stage": STAGE, "reason": reason, "url": row["url"], "detail": detail})
                    continue
                docs.append(shards.TokenizedDoc(row["doc_id"], row["url"], tokens[offsets[i]:offsets[i + 1]],
                                                row["karma"], tuple(row["subreddits"] or ()), row["created_utc"]))
            kept += len(docs)
            infos.append(write_shard(str(out), e["split"], *numbering[e["name"]], docs))
    stats = dict(manifest.get("stats") or {})
    stages = dict(stats.get("stages") or {})
    total = kept + sum(dropped.values())
    stages[STAGE] = {"in": total, "out": kept, "dropped": {r: n for r, n in dropped.items() if n},
                     "extra": extra, "balanced": True}
    stats["stages"] = stages
    files.write_atomic(out / DROPS_DIR / f"drops-{STAGE}.jsonl.gz",    # read back by pipeline.drops
                       gzip.compress("".join(json.dumps(d) + "\n" for d in drops).encode(), mtime=0))
    shards.write_manifest(str(out), infos, config=manifest.get("config", {}), stats=stats)
    return kept, dropped
