"""`webtext shards export`: the documents as JSON lines of text with their provenance; the token-level formats
(Parquet with tokens, nanoGPT .bin, a Hugging Face datasets directory) are in formats.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa

from core import files
from core.settings import UsageError
from pipeline.shards.browse import human_bytes, iter_docs, load_manifest, progress, select, text_of

EXPORT_SCHEMA = pa.schema([("doc_id", pa.string()), ("url", pa.string()), ("text", pa.string()),
                           ("karma", pa.int64()), ("subreddits", pa.list_(pa.string())),
                           ("created_utc", pa.int64()), ("split", pa.string())])


def cmd_export(args) -> int:
    if args.format != "jsonl":   # token-level formats (parquet with tokens, nanogpt, hf): pipeline/shards/formats.py
        from pipeline.shards import formats
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
