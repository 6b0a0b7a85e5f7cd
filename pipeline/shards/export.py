"""`webtext shards export`: the documents as JSON lines of text with their provenance; the token-level formats
(Parquet with tokens, nanoGPT .bin, a Hugging Face datasets directory) are in formats.py."""
from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path
from typing import List, Optional

import pyarrow as pa

from core import files
from core.settings import UsageError
from pipeline.shards.browse import human_bytes, iter_docs, load_manifest, progress, select, text_of

EXPORT_SCHEMA = pa.schema([("doc_id", pa.string()), ("url", pa.string()), ("text", pa.string()),
                           ("karma", pa.int64()), ("subreddits", pa.list_(pa.string())),
                           ("created_utc", pa.int64()), ("split", pa.string())])


# An earlier export directory that --overwrite may replace: its marker file, and every file it may hold (relative
# paths, fnmatch patterns; the hf marker also lists its data files). A file outside these is not webtext's.
EXPORT_DIRS = {"hf": ("webtext_export.json", ("webtext_export.json", "dataset_dict.json", "*/state.json",
                                              "*/dataset_info.json")),
               "nanogpt": ("meta.json", ("meta.json", "meta.pkl", "*.bin"))}


def _export_files(out: Path, fmt: str) -> Optional[List[str]]:
    """The files of an earlier `export --format fmt` in `out`, or None if `out` holds anything else."""
    marker, patterns = EXPORT_DIRS[fmt]
    try:
        listed = set(json.loads((out / marker).read_text()).get("files") or ())
    except (OSError, ValueError, AttributeError):
        return None
    found = [p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()]
    ours = [f for f in found if f in listed or any(fnmatch.fnmatchcase(f, pat) for pat in patterns)]
    return found if len(ours) == len(found) else None


def check_out(args) -> Optional[Path]:
    """The same --out/--overwrite rule for every format: an existing --out needs --overwrite, and --overwrite replaces
    only a file the user named or a directory of an earlier export of the same format (never other files).
    Returns an earlier export directory to replace, else None."""
    out = Path(args.out)
    if args.out == "-" or not out.exists():
        return None
    if args.format in EXPORT_DIRS:
        if out.is_dir() and not any(out.iterdir()):
            return None
        if not args.overwrite:
            raise UsageError(f"--out {out} already exists; pass --overwrite to replace an earlier {args.format} "
                             "export there, or give a new directory")
        if not out.is_dir() or _export_files(out, args.format) is None:
            raise UsageError(f"--out {out} is not an earlier `webtext shards export --format {args.format}` (it holds "
                             "other files); --overwrite replaces only such an export: give a new directory")
        return out
    if out.is_file() and not args.overwrite:
        raise UsageError(f"--out {out} already exists; pass --overwrite to replace it, or give a new file name")
    return None


def cmd_export(args) -> int:
    earlier = check_out(args)
    if args.format != "jsonl":   # token-level formats (parquet with tokens, nanogpt, hf): pipeline/shards/formats.py
        from pipeline.shards import formats
        if earlier is None:
            return formats.run(args)
        with files.set_aside(earlier):   # removed only once the new export is in place
            return formats.run(args)
    out = Path(args.out)
    to_stdout = args.out == "-"
    if to_stdout and args.format != "jsonl":
        raise UsageError("--out - (standard output) works only with --format jsonl")
    if not to_stdout and out.is_dir():
        raise UsageError(f"--out {out} is a directory: give a file name, e.g. {out / ('corpus.' + args.format)}")
    if not to_stdout and not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist; create it first")
    manifest = load_manifest(args.dir)
    entries = select(manifest, args.split)
    total = sum(s["docs"] for s in entries)
    rows = ({**meta, "text": text_of(tokens.tolist()), "split": entry["split"]}
            for entry, meta, tokens in iter_docs(args.dir, entries))

    with progress(total, "doc", args.quiet) as bar:
        if to_stdout:
            return _write_jsonl(rows, sys.stdout, bar)
        with files.replacing(out) as tmp:   # a reader never sees a half-written export
            with open(tmp, "w", encoding="utf-8") as f:
                _write_jsonl(rows, f, bar)
    if not args.quiet:
        print(f"export: wrote {total:,} docs ({args.split}) to {out} ({human_bytes(out.stat().st_size)})",
              file=sys.stderr)
    return 0


def _write_jsonl(rows, f, bar) -> int:
    for row in rows:
        f.write(json.dumps({k: row[k] for k in EXPORT_SCHEMA.names}, ensure_ascii=False) + "\n")
        bar.update(1)
    return 0
