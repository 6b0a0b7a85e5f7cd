"""`webtext shards`: look inside a shard directory, check it, export it.

    webtext shards ls DIR                                   one row per shard, totals per split (a shard whose
                                                            file size is not the manifest's: warning, exit 1)
    webtext shards stats DIR [--plot FILE.png] [--top N]    sizes, document lengths, domains, karma, subreddits
    webtext shards show DIR N [--split train|val] [--tokens]
    webtext shards verify DIR                               checksums, schema, vocab, EOT (exit 1 on a problem)
    webtext shards overlap DIR --against FILE... [--remove --out NEW_DIR]   8-gram overlap (pipeline/shards/overlap.py)
    webtext shards dedup-against DIR OTHER [--json F] [--remove --out NEW_DIR]   DIR's exact/near duplicates of
                                                            another corpus's documents, from both sketch indexes
                                                            (pipeline/shards/against.py)
    webtext shards index DIR                                the sketch index of a corpus made by an older webtext,
                                                            from its shards (pipeline/shards/reindex.py)
    webtext shards export DIR --format jsonl|parquet|nanogpt|hf --out PATH [--split train|val|all] [--overwrite]

"tokens" always counts what the shard stores, so a document's count includes its closing EOT and the counts add
up to the manifest's totals. A user mistake prints one line starting with "error:" and exits 2; a damaged shard
directory exits 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import List

import numpy as np
import pyarrow.compute as pc

from apache_beam.io.filesystems import FileSystems

from core import files
from core import shard_format as shards
from core.plots import new_figure, save_figure
from core.settings import ArgumentParser, UsageError
from core.tokenizer import TokenizerUnavailable
from pipeline.shards.browse import (PROG, SIZE_HEADER, DataError, domain_of, iso_utc, load_manifest, open_table, progress,
                                    select, size_cells, text_of)
from pipeline.shards.export import cmd_export

PERCENTILES = (5, 25, 50, 75, 95)
PLOT_FORMATS = (".png", ".svg", ".pdf")


# ------------------------------------------------------------------------------------------------ ls
def size_problems(data_dir: str, entries: List[dict]) -> List[str]:
    """Shards whose file is missing or not the manifest's size (truncated, replaced): a stat per shard, no read."""
    problems = []
    for s in entries:
        path = files.join(str(data_dir), s["name"])
        try:
            size = os.path.getsize(path) if files.is_local(path) else FileSystems.metadata([path])[0].size_in_bytes
        except Exception:   # OSError, or Beam's BeamIOError for a remote path
            problems.append(f"{s['name']}: missing (the manifest lists {s['bytes']:,} bytes)")
            continue
        if size != s["bytes"]:
            problems.append(f"{s['name']}: {size:,} bytes on disk, the manifest says {s['bytes']:,}")
    return problems


def cmd_ls(args) -> int:
    manifest = load_manifest(args.dir)
    entries = select(manifest, "all")
    problems = size_problems(args.dir, entries)
    width = max([len(s["name"]) for s in entries] + [len("total train (00000 shards)")])
    print(f"{'name':<{width}}  {'split':<5}  {SIZE_HEADER}")
    for s in entries:
        mark = "  <- not the manifest's size" if any(p.startswith(s["name"] + ":") for p in problems) else ""
        print(f"{s['name']:<{width}}  {s['split']:<5}  {size_cells([s])}{mark}")
    for split in (*shards.SPLITS, "all"):
        group = select(manifest, split)
        label = f"total {split} ({len(group)} shard{'s' if len(group) != 1 else ''})"
        print(f"{label:<{width}}  {'':<5}  {size_cells(group)}")
    if problems:   # the rows above are the manifest's numbers, which these files no longer match
        for line in problems:
            print(f"warning: {line}", file=sys.stderr)
        print(f"warning: {len(problems)} shard(s) differ from {shards.MANIFEST} (truncated or replaced); the numbers "
              f"above are the manifest's. Run `{PROG} verify {args.dir}`", file=sys.stderr)
        return 1
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
    with progress(len(entries), "shard", args.quiet) as bar:
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
        print(f"{split:<6}  {len(group):>7}  {size_cells(group)}")
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
    everything = np.concatenate(list(lengths.values()))
    lo, hi = max(int(everything.min()), 1), int(everything.max())
    bins = np.logspace(np.log10(lo), np.log10(max(hi, lo + 1)), 60)
    fig, ax = new_figure(8, 4.5)
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
    save_figure(fig, path)


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


# ------------------------------------------------------------------------------------------------ entry point
def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Look inside, check and export a webtext shard directory.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # The same flag after the subcommand; SUPPRESS keeps it from resetting a --quiet given before it.
    common = ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{ls,stats,show,verify,export,overlap,dedup-against,index}")

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
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out: the file named, or an earlier export directory of this format")
    p.add_argument("--split", choices=("train", "val", "all"), default="all")
    from pipeline.shards import overlap
    overlap.add_parser(sub, common)   # `overlap`: pipeline/shards/overlap.py
    from pipeline.shards import against
    against.add_parser(sub, common)   # `dedup-against`: pipeline/shards/against.py
    from pipeline.shards import reindex
    reindex.add_parser(sub, common)   # `index`: pipeline/shards/reindex.py
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
