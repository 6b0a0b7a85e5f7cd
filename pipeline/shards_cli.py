"""`webtext shards`: look inside a shard directory, check it, export it.

    webtext shards ls DIR                                   one row per shard, totals per split
    webtext shards stats DIR [--plot FILE.png] [--top N]    sizes, document lengths, domains, karma, subreddits
    webtext shards show DIR N [--split train|val] [--tokens]
    webtext shards verify DIR                               checksums, schema, vocab, EOT (exit 1 on a problem)
    webtext shards overlap DIR --against FILE... [--remove --out NEW_DIR]   8-gram overlap (pipeline/overlap.py)
    webtext shards export DIR --format jsonl|parquet|nanogpt|hf --out PATH [--split train|val|all]

"tokens" always counts what the shard stores, so a document's count includes its closing EOT and the counts add
up to the manifest's totals. A user mistake prints one line starting with "error:" and exits 2; a damaged shard
directory exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, List, Tuple
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from pipeline import shards
from pipeline.tokenize import EOT, TokenizerUnavailable, decode

PROG = "webtext shards"
PERCENTILES = (5, 25, 50, 75, 95)
PLOT_FORMATS = (".png", ".svg", ".pdf")


class UsageError(Exception):
    """The user asked for something impossible (exit 2)."""


class DataError(Exception):
    """The shard directory is damaged or unreadable (exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, no usage dump, no SystemExit from inside a library call
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ------------------------------------------------------------------------------------------------ helpers
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
    path = Path(data_dir)
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise UsageError(f"{data_dir} {problem}: give the --out directory of a `webtext run`")
    try:
        return shards.read_manifest(path)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path / shards.MANIFEST} is not valid JSON ({e}); rerun `webtext run` to rewrite it") from None


def select(manifest: dict, split: str) -> List[dict]:
    """The manifest's shard entries of one split ("all": every split), in manifest order."""
    return [s for s in manifest.get("shards", []) if split == "all" or s["split"] == split]


def open_table(data_dir: str, entry: dict) -> pa.Table:
    try:
        return shards.open_shard(Path(data_dir) / entry["name"])
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
        tokens, offsets = shards.shard_tokens(Path(data_dir) / entry["name"])
        meta = table.drop_columns(["tokens"]).to_pylist()
        for i, row in enumerate(meta):
            yield entry, row, tokens[offsets[i]:offsets[i + 1]]


def _progress(total: int, unit: str, quiet: bool) -> tqdm:
    return tqdm(total=total, unit=unit, disable=quiet, dynamic_ncols=True, file=sys.stderr)


SIZE_HEADER = f"{'docs':>12}  {'tokens':>15}  {'bytes':>15}  {'size':>10}"


def _size_cells(group: List[dict]) -> str:
    docs, tokens, size = (sum(s[k] for s in group) for k in ("docs", "tokens", "bytes"))
    return f"{docs:>12,}  {tokens:>15,}  {size:>15,}  {human_bytes(size):>10}"


# ------------------------------------------------------------------------------------------------ ls
def cmd_ls(args) -> int:
    manifest = load_manifest(args.dir)
    entries = select(manifest, "all")
    width = max([len(s["name"]) for s in entries] + [len("total train (00000 shards)")])
    print(f"{'name':<{width}}  {'split':<5}  {SIZE_HEADER}")
    for s in entries:
        print(f"{s['name']:<{width}}  {s['split']:<5}  {_size_cells([s])}")
    for split in (*shards.SPLITS, "all"):
        group = select(manifest, split)
        label = f"total {split} ({len(group)} shard{'s' if len(group) != 1 else ''})"
        print(f"{label:<{width}}  {'':<5}  {_size_cells(group)}")
    return 0


# ------------------------------------------------------------------------------------------------ stats
def _summary_row(values: np.ndarray) -> str:
    if len(values) == 0:
        return "  (no documents)"
    ps = np.percentile(values, PERCENTILES)
    cells = [f"p{p}={v:,.0f}" for p, v in zip(PERCENTILES, ps)]
    return "  " + "  ".join(cells + [f"max={values.max():,}", f"mean={values.mean():,.1f}"])


def _top(counter: Counter, total: int, n: int, what: str) -> List[str]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]   # ties by name: stable output
    return [f"  {key or '(none)':<40}  {count:>15,}  {100 * count / max(total, 1):5.1f}% of {what}"
            for key, count in ranked] or ["  (none)"]


def cmd_stats(args) -> int:
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    plot = Path(args.plot) if args.plot else None
    if plot is not None:   # check before reading every shard, not after
        if plot.suffix.lower() not in PLOT_FORMATS:
            raise UsageError(f"--plot {plot}: name a {'/'.join(PLOT_FORMATS)} file, e.g. --plot lengths.png")
        if not plot.parent.is_dir():
            raise UsageError(f"--plot {plot}: directory {plot.parent} does not exist; create it first")
    manifest = load_manifest(args.dir)
    entries = select(manifest, args.split)

    lengths = {split: [] for split in shards.SPLITS}
    karma, docs_by_domain, tokens_by_domain, subreddits = [], Counter(), Counter(), Counter()
    with _progress(len(entries), "shard", args.quiet) as bar:
        for entry in entries:
            table = open_table(args.dir, entry)
            n_tokens = pc.list_value_length(table.column("tokens")).to_numpy().astype(np.int64)
            lengths[entry["split"]].append(n_tokens)
            karma.append(table.column("karma").drop_null().to_numpy())
            for url, n in zip(table.column("url").to_pylist(), n_tokens.tolist()):
                domain = domain_of(url)
                docs_by_domain[domain] += 1
                tokens_by_domain[domain] += n
            subreddits.update(pc.list_flatten(table.column("subreddits")).to_pylist())
            bar.update(1)
    lengths = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in lengths.items()}
    all_lengths = np.concatenate(list(lengths.values()))
    karma = np.concatenate(karma) if karma else np.zeros(0, np.int64)
    n_docs, n_tokens = len(all_lengths), int(all_lengths.sum())

    print(f"{'split':<6}  {'shards':>7}  {SIZE_HEADER}")
    for split in (*shards.SPLITS, "all"):
        group = [s for s in entries if split == "all" or s["split"] == split]
        print(f"{split:<6}  {len(group):>7}  {_size_cells(group)}")
    print(f"\ndocument length in tokens (incl. EOT), {args.split}, {n_docs:,} docs:")
    print(_summary_row(all_lengths))
    print(f"\nkarma, {len(karma):,} docs:")
    print(_summary_row(karma))
    print(f"\ntop {args.top} domains by docs ({len(docs_by_domain):,} domains):")
    print("\n".join(_top(docs_by_domain, n_docs, args.top, "docs")))
    print(f"\ntop {args.top} domains by tokens:")
    print("\n".join(_top(tokens_by_domain, n_tokens, args.top, "tokens")))
    print(f"\ntop {args.top} subreddits by docs ({len(subreddits):,} subreddits; a doc counts for each of its own):")
    print("\n".join(_top(subreddits, n_docs, args.top, "docs")))
    if plot is not None:
        if n_docs == 0:
            raise DataError(f"no documents in split {args.split!r}: nothing to plot")
        write_length_plot(lengths, plot)
        print(f"\nplot: wrote document-length histogram to {plot}")
    return 0


def write_length_plot(lengths: dict, path: Path) -> None:
    """Histogram of document lengths per split on log-spaced bins (Agg canvas: no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    everything = np.concatenate(list(lengths.values()))
    lo, hi = max(int(everything.min()), 1), int(everything.max())
    bins = np.logspace(np.log10(lo), np.log10(max(hi, lo + 1)), 60)
    fig = Figure(figsize=(8, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for split, values in lengths.items():
        if len(values):
            ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.5, label=f"{split} ({len(values):,} docs)")
    median = float(np.median(everything))
    ax.axvline(median, color="black", linestyle="--", linewidth=1, label=f"median {median:,.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("document length (tokens, incl. EOT)")
    ax.set_ylabel("documents")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"webtext document lengths: {len(everything):,} docs, {int(everything.sum()):,} tokens")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format=path.suffix.lower()[1:])
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ show
def cmd_show(args) -> int:
    manifest = load_manifest(args.dir)
    entries = select(manifest, args.split)
    total = sum(s["docs"] for s in entries)
    n = args.n + total if args.n < 0 else args.n   # -1 is the last document, as in Python
    if not 0 <= n < total:
        raise UsageError(f"document {args.n} is out of range: the {args.split} split has {total:,} docs "
                         f"(use 0..{total - 1} or -1 for the last)" if total else
                         f"the {args.split} split has no documents; try --split "
                         f"{'val' if args.split == 'train' else 'train'}")
    start = 0
    for entry in entries:   # walk the manifest's doc counts: only the one shard that holds N is opened
        if n < start + entry["docs"]:
            break
        start += entry["docs"]
    row = open_table(args.dir, entry).slice(n - start, 1).to_pylist()[0]
    tokens = row["tokens"]
    print(f"doc_id:      {row['doc_id']}")
    print(f"url:         {row['url']}")
    print(f"karma:       {row['karma']}")
    print(f"subreddits:  {', '.join(row['subreddits'] or []) or '(none)'}")
    print(f"created_utc: {row['created_utc']} ({iso_utc(row['created_utc'])})")
    print(f"shard:       {entry['name']} (row {n - start}; doc {n} of {total:,} in {args.split})")
    print(f"tokens:      {len(tokens):,} (incl. EOT)")
    print("-" * 80)
    print(" ".join(map(str, tokens)) if args.tokens else text_of(tokens))
    return 0


# ------------------------------------------------------------------------------------------------ verify
def cmd_verify(args) -> int:
    manifest = load_manifest(args.dir)   # missing dir / manifest is a user mistake (2), not a damaged corpus (1)
    problems = shards.verify(args.dir)
    if problems:
        for line in problems:
            print(line)
        print(f"FAILED: {len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    entries = select(manifest, "all")
    print(f"OK: {len(entries)} shards, {sum(s['docs'] for s in entries):,} docs, "
          f"{sum(s['tokens'] for s in entries):,} tokens verified")
    return 0


# ------------------------------------------------------------------------------------------------ export
EXPORT_SCHEMA = pa.schema([("doc_id", pa.string()), ("url", pa.string()), ("text", pa.string()),
                           ("karma", pa.int64()), ("subreddits", pa.list_(pa.string())),
                           ("created_utc", pa.int64()), ("split", pa.string())])


def cmd_export(args) -> int:
    if args.format != "jsonl":   # token-level formats: pipeline/export.py
        from pipeline import export
        return export.run(args)
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

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")   # a reader never sees a half-written export
    with _progress(total, "doc", args.quiet) as bar:
        if to_stdout:
            return _write_jsonl(rows, sys.stdout, bar)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                _write_jsonl(rows, f, bar)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    if not args.quiet:
        print(f"export: wrote {total:,} docs ({args.split}) to {out} ({human_bytes(out.stat().st_size)})",
              file=sys.stderr)
    return 0


def _write_jsonl(rows, f, bar) -> int:
    for row in rows:
        f.write(json.dumps({k: row[k] for k in EXPORT_SCHEMA.names}, ensure_ascii=False) + "\n")
        bar.update(1)
    return 0


# ------------------------------------------------------------------------------------------------ entry point
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Look inside, check and export a webtext shard directory.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # The same flag after the subcommand; SUPPRESS keeps it from resetting a --quiet given before it.
    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{ls,stats,show,verify,export,overlap}")

    def command(name, func, help):
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.add_argument("dir", metavar="DIR", help="a shard directory (the --out of `webtext run`)")
        p.set_defaults(func=func)
        return p

    command("ls", cmd_ls, "one row per shard, totals per split")
    p = command("stats", cmd_stats, "sizes, document lengths, domains, karma, subreddits")
    p.add_argument("--split", choices=("train", "val", "all"), default="all")
    p.add_argument("--top", type=int, default=10, metavar="N", help="rows in the top-N lists (default 10)")
    p.add_argument("--plot", metavar="FILE.png", help="also write a document-length histogram")
    p = command("show", cmd_show, "one document with its provenance")
    p.add_argument("n", metavar="N", type=int, help="0-based index in manifest order across the split's shards")
    p.add_argument("--split", choices=shards.SPLITS, default="train")
    p.add_argument("--tokens", action="store_true", help="print the token ids (incl. EOT) instead of the text")
    command("verify", cmd_verify, "checksums, schema, vocabulary, EOT; exit 1 on a problem")
    p = command("export", cmd_export, "text as JSON lines; text+tokens as Parquet; nanoGPT .bin; HF datasets dir")
    p.add_argument("--format", choices=("jsonl", "parquet", "nanogpt", "hf"), required=True)
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output file ('-': stdout, jsonl only); a new directory for nanogpt and hf")
    p.add_argument("--split", choices=("train", "val", "all"), default="all")
    from pipeline import overlap
    overlap.add_parser(sub, common)   # `overlap`: pipeline/overlap.py
    return parser


def main(argv: List[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UsageError, DataError, TokenizerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except SystemExit as e:   # --help
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:   # `webtext shards show ... | head`: the reader left; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
