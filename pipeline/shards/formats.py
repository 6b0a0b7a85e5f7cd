"""`webtext shards export DIR --format nanogpt|hf|parquet --out OUT`: the shards in the shapes other tools open.

    nanogpt  OUT/train.bin, OUT/val.bin   flat uint16 tokens (documents back to back, each ending in EOT), exactly
             OUT/meta.pkl, OUT/meta.json  what nanoGPT's prepare.py writes; meta.pkl holds vocab_size for its train.py
    hf       OUT/dataset_dict.json, OUT/{train,validation}/data-*.arrow + state.json + dataset_info.json: a DatasetDict
             that `datasets.load_from_disk(OUT)` opens memory-mapped (zero-copy). One Arrow *stream* file per shard
             (datasets reads only the stream format; the shards are the file format the trainer needs).
    parquet  one file: doc_id, url, text, tokens, karma, subreddits, created_utc, split (zstd); for DuckDB, Polars,
             Spark, pandas. Row groups of at most 10,000 docs.

Every export first checks each source shard against its sha256 in manifest.json and records those checksums (and
the sha256 of every file it writes) in OUT/meta.json, OUT/webtext_export.json or the Parquet footer metadata
(key "webtext"). A directory export is built under a temporary name and renamed into place at the end, so OUT
is either absent or complete. Tools that open the shards directly (no export) are in docs/shard-format.md.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from core import files
from core import shard_format as shards
from core.settings import UsageError
from core.token_bytes import decode_bytes
from core.tokenizer import EOT, VOCAB_SIZE, tokenizer_metadata
from pipeline.shards.browse import DataError, progress as _progress, human_bytes, load_manifest, open_table, select

DIR_FORMATS = ("nanogpt", "hf")
ROWS_PER_GROUP = 10_000
EXPORT_MANIFEST = "webtext_export.json"
# datasets' feature description of the shard schema (what `Features.from_arrow_schema` would infer)
HF_FEATURES = {
    "doc_id": {"dtype": "string", "_type": "Value"},
    "url": {"dtype": "string", "_type": "Value"},
    "tokens": {"feature": {"dtype": "uint16", "_type": "Value"}, "_type": "List"},
    "karma": {"dtype": "int64", "_type": "Value"},
    "subreddits": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},
    "created_utc": {"dtype": "int64", "_type": "Value"},
}
PARQUET_SCHEMA = pa.schema([("doc_id", pa.string()), ("url", pa.string()), ("text", pa.string()),
                            ("tokens", pa.list_(pa.uint16())), ("karma", pa.int64()),
                            ("subreddits", pa.list_(pa.string())), ("created_utc", pa.int64()),
                            ("split", pa.string())])


def checked_entries(data_dir: str, entries: List[dict]) -> List[dict]:
    """The entries, after checking every shard's bytes against the manifest (an export of a damaged shard would
    carry the damage somewhere nothing checks it again)."""
    for e in entries:
        path = Path(data_dir) / e["name"]
        if not path.is_file():
            raise DataError(f"shard {e['name']} is missing; run `webtext shards verify {data_dir}`")
        if shards.file_sha256(path) != e["sha256"]:
            raise DataError(f"shard {e['name']} does not match its sha256 in the manifest; "
                            f"run `webtext shards verify {data_dir}`")
    return entries


def source_record(data_dir: str, manifest: dict, entries: List[dict]) -> dict:
    return {"source": str(Path(data_dir).resolve()), "format_version": manifest.get("format_version"),
            "tokenizer": manifest.get("tokenizer", tokenizer_metadata()),
            "shards": [{k: e[k] for k in ("name", "split", "docs", "tokens", "sha256")} for e in entries]}


def _write_json(path: Path, obj) -> None:
    files.write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


# ------------------------------------------------------------------------------------------------ nanogpt
def export_nanogpt(data_dir: str, entries: List[dict], out: Path, bar) -> dict:
    """train.bin / val.bin: each split's shards' flat token buffers concatenated in manifest order. Our documents
    already end in EOT, which is exactly nanoGPT's layout (ids + [eot] per document, np.uint16)."""
    files = {}
    for split in shards.SPLITS:
        path = out / f"{split}.bin"
        digest, n = hashlib.sha256(), 0
        with open(path, "wb") as f:
            for e in (e for e in entries if e["split"] == split):
                tokens, _ = shards.shard_tokens(Path(data_dir) / e["name"])   # uint16 view on the memory map
                for i in range(0, len(tokens), 1 << 26):                    # 128 MiB slices: bounded memory
                    chunk = memoryview(np.ascontiguousarray(tokens[i:i + (1 << 26)]).astype("<u2", copy=False))
                    f.write(chunk)
                    digest.update(chunk)
                n += len(tokens)
                bar.update(1)
        files[path.name] = {"tokens": n, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    # nanoGPT's train.py reads meta.pkl for vocab_size (else it assumes 50304): a plain dict of ints and strings
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": VOCAB_SIZE, "eot": EOT, "tokenizer": "gpt2", "dtype": "uint16"}, f)
    return {"format": "nanogpt", "dtype": "uint16", "vocab_size": VOCAB_SIZE, "eot": EOT, "files": files}


# ------------------------------------------------------------------------------------------------ hf
HF_SPLITS = {"train": "train", "val": "validation"}   # shard files say val; every Hugging Face view says validation
def export_hf(data_dir: str, entries: List[dict], out: Path, bar) -> dict:
    """A DatasetDict directory: per split, one Arrow stream file per shard, same columns and schema metadata."""
    fingerprint = hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()[:16]
    files, splits = {}, []
    for ours in shards.SPLITS:
        group = [e for e in entries if e["split"] == ours]
        if not group:
            continue
        split = HF_SPLITS[ours]       # the Hub's split names: validation, not our files' val
        splits.append(split)
        (out / split).mkdir()
        names = []
        for i, e in enumerate(group):
            name = f"data-{i:05d}-of-{len(group):05d}.arrow"
            table = open_table(data_dir, e)   # memory-mapped; the writer copies buffers straight to the file
            with pa.OSFile(str(out / split / name), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            names.append(name)
            files[f"{split}/{name}"] = {"from": e["name"], "docs": e["docs"],
                                        "sha256": shards.file_sha256(out / split / name)}
            bar.update(1)
        _write_json(out / split / "state.json", {
            "_data_files": [{"filename": n} for n in names], "_fingerprint": f"{fingerprint}{split}",
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
            "_split": split})
        _write_json(out / split / "dataset_info.json", {
            "citation": "", "description": f"webtext {split} split: GPT-2 token ids (tokens ends with EOT {EOT})",
            "features": HF_FEATURES, "homepage": "", "license": "", "splits": {split: {
                "name": split, "num_examples": sum(e["docs"] for e in group)}}})
    _write_json(out / "dataset_dict.json", {"splits": splits})
    return {"format": "hf", "files": files}


# ------------------------------------------------------------------------------------------------ parquet
def shard_with_text(table: pa.Table, split: str) -> pa.Table:
    """The shard's rows with a decoded `text` column (no closing EOT) and `split`, in PARQUET_SCHEMA order."""
    lists = table.column("tokens").combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.uint16()))
    offsets = lists.offsets.to_numpy().astype(np.int64)
    flat = lists.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
    data, starts = decode_bytes(flat)                      # EOT decodes to b"": text without the closing EOT
    byte_offsets = starts[offsets - offsets[0]]
    text = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(byte_offsets), pa.py_buffer(data))
    try:
        text.validate(full=True)                           # UTF-8 check: a doc of partial characters is possible
        text = text.cast(pa.string())
    except pa.ArrowInvalid:                                # decode as tiktoken does (errors="replace")
        text = pa.array([bytes(data[a:b]).decode("utf-8", "replace")
                         for a, b in zip(byte_offsets[:-1], byte_offsets[1:])], pa.string())
    cols = {name: table.column(name) for name in table.column_names}
    cols.update(text=text, tokens=lists, split=pa.array([split] * table.num_rows, pa.string()))
    return pa.table([cols[f.name] for f in PARQUET_SCHEMA], schema=PARQUET_SCHEMA)


def export_parquet(data_dir: str, entries: List[dict], tmp: Path, bar, source: dict) -> dict:
    import pyarrow.parquet as pq

    schema = PARQUET_SCHEMA.with_metadata({"webtext": json.dumps(source)})
    with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
        for e in entries:
            table = open_table(data_dir, e)
            for i in range(0, max(table.num_rows, 1), ROWS_PER_GROUP):   # bounded row groups, bounded memory
                writer.write_table(shard_with_text(table.slice(i, ROWS_PER_GROUP), e["split"]).cast(schema))
            bar.update(1)
    return {"format": "parquet"}


# ------------------------------------------------------------------------------------------------ entry
def run(args) -> int:
    """`webtext shards export` for --format nanogpt, hf and parquet (args: dir, format, out, split, quiet)."""
    out = Path(args.out)
    if args.out == "-":
        raise UsageError("--out - (standard output) works only with --format jsonl")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist; create it first")
    if args.format in DIR_FORMATS and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UsageError(f"--out {out} already exists; remove it or give a new directory")
    if args.format == "parquet" and out.is_dir():
        raise UsageError(f"--out {out} is a directory: give a file name, e.g. {out / 'corpus.parquet'}")
    manifest = load_manifest(args.dir)
    entries = select(manifest, args.split)
    t0 = time.perf_counter()
    entries = checked_entries(args.dir, entries)
    source = source_record(args.dir, manifest, entries)

    # a reader never sees a half-written export: built under a temporary name and renamed
    with _progress(len(entries), "shard", args.quiet) as bar:
        if args.format == "parquet":
            with files.replacing(out) as tmp:
                export_parquet(args.dir, entries, Path(tmp), bar, source)
        else:
            with files.replacing_dir(out) as tmp:
                tmp = Path(tmp)
                record = (export_nanogpt if args.format == "nanogpt" else export_hf)(args.dir, entries, tmp, bar)
                record.update(source)
                _write_json(tmp / ("meta.json" if args.format == "nanogpt" else EXPORT_MANIFEST), record)
    seconds = time.perf_counter() - t0
    if not args.quiet:
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size
        docs = sum(e["docs"] for e in entries)
        src = sum(e["bytes"] for e in entries)
        print(f"export: wrote {docs:,} docs ({args.split}) as {args.format} to {out} ({human_bytes(size)}; "
              f"{src / 1e6 / max(seconds, 1e-9):,.0f} MB/s of shards)", file=sys.stderr)
    return 0
