"""Reading a shard directory for people: the manifest with one-line errors, documents with their provenance,
sizes and dates as text. Shared by `webtext shards` and `webtext shards export`."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, List, Tuple
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from core import files
from core import shard_format as shards
from core.progress import progress_bar
from core.settings import UsageError
from core.tokenizer import EOT, decode

PROG = "webtext shards"


class DataError(Exception):
    """The shard directory is damaged or unreadable (exit 1)."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def iso_utc(ts) -> str:
    if ts is None:
        return "unknown"
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def domain_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host   # www.example.com and example.com are one site


def load_manifest(data_dir: str) -> dict:
    if files.is_local(data_dir):
        path = Path(str(data_dir).removeprefix("file://"))
        if not path.is_dir():
            problem = "is not a directory" if path.exists() else "does not exist"
            raise UsageError(f"{data_dir} {problem}: give the --out directory of a `webtext run`")
    try:
        return shards.read_manifest(data_dir)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{files.join(data_dir, shards.MANIFEST)} is not valid JSON ({e}); rerun `webtext run` to "
                        "rewrite it") from None


def select(manifest: dict, split: str) -> List[dict]:
    """The manifest's shard entries of one split ("all": every split), in manifest order."""
    return [s for s in manifest.get("shards", []) if split == "all" or s["split"] == split]


def open_table(data_dir: str, entry: dict) -> pa.Table:
    try:
        return shards.open_shard(files.join(str(data_dir), entry["name"]))
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read shard {entry['name']} ({e}); run `{PROG} verify {data_dir}`") from None


def text_of(tokens) -> str:
    tokens = list(tokens)
    if tokens and tokens[-1] == EOT:
        tokens = tokens[:-1]
    try:
        return decode(tokens)
    except (KeyError, ValueError) as e:   # a token id outside the vocabulary
        raise DataError(f"cannot decode tokens ({e}); run `{PROG} verify` on the directory") from None


def iter_docs(data_dir: str, entries: List[dict]) -> Iterator[Tuple[dict, dict, np.ndarray]]:
    """(shard entry, provenance row, tokens viewing the memory map) for every document of the given shards."""
    for entry in entries:
        table = open_table(data_dir, entry)
        tokens, offsets = shards.shard_tokens(files.join(str(data_dir), entry["name"]))
        meta = table.drop_columns(["tokens"]).to_pylist()
        for i, row in enumerate(meta):
            yield entry, row, tokens[offsets[i]:offsets[i + 1]]


def progress(total: int, unit: str, quiet: bool):
    return progress_bar("shards", total=total, unit=unit, quiet=quiet)


SIZE_HEADER = f"{'docs':>12}  {'tokens':>15}  {'bytes':>15}  {'size':>10}"


def size_cells(group: List[dict]) -> str:
    docs, tokens, size = (sum(s[k] for s in group) for k in ("docs", "tokens", "bytes"))
    return f"{docs:>12,}  {tokens:>15,}  {size:>15,}  {human_bytes(size):>10}"
