"""`webtext demo`: the real pipeline on the embedded demo web, then a summary of every planted case.

The demo web runs on 127.0.0.1 as an HTTP proxy, so URLs keep their real host names (en.wikipedia.org,
www.example-news.com, ...) and the fetcher reaches them through `--http-proxy`, exactly as a user would
route a crawl through a proxy. Nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from core.records import SOURCE
from core.settings import UsageError
from core.shard_format import open_shard, read_manifest, verify
from crawl.links import normalize_url
from pipeline import engines
from pipeline.config import load_config
from pipeline.demo.web import DEMO_CASES, DUMP_NAME, build_demo
from pipeline.drops import read_drops as drop_examples
from pipeline.options import parse
from pipeline.runner import run


def demo_config(dump: Path, proxy_url: str, quiet: bool):
    return load_config(None, {
        "run": {"inputs": [str(dump)], "quiet": quiet},
        "fetch": {"http_proxy": proxy_url, "min_delay": 0.05, "connect_timeout": 5, "read_timeout": 5},
        # ~30k tokens: small shards and batches so the demo writes several train shards of several record
        # batches each (the paths a 9B-token corpus takes at the default 2**27 / 2**24).
        "shards": {"target_tokens": 8_000, "batch_tokens": 4_096, "val_fraction": 0.1},
    })


def kept_urls(shard_dir: str) -> set:
    urls = set()
    for s in read_manifest(shard_dir)["shards"]:
        urls.update(open_shard(Path(shard_dir) / s["name"]).column("url").to_pylist())
    return urls


def read_drops(out_dir: str) -> Dict[str, str]:
    """url -> "stage/reason" from _drops/ (by raw and normalized URL; the demo is far below the examples cap)."""
    out = {}
    for d in drop_examples(out_dir):
        if d.url:
            out[d.url] = f"{d.stage}/{d.reason}"
            out.setdefault(normalize_url(d.url) or d.url, f"{d.stage}/{d.reason}")
    return out


def case_outcomes(planted: Dict[str, List[str]], out_dir: str, stats: dict) -> Dict[str, List[Tuple[str, str]]]:
    """For each planted case, (url, outcome) per planted submission URL."""
    drops, kept = read_drops(out_dir), kept_urls(out_dir)
    outcomes = {}
    for case, urls in planted.items():
        if case == "malformed_line":
            n = stats["stages"].get(SOURCE, {}).get("dropped", {}).get("malformed_line", 0)
            outcomes[case] = [(f"{n} dump lines", f"{SOURCE}/malformed_line" if n else "missing")]
            continue
        rows = []
        for url in urls:
            norm = normalize_url(url) or url
            outcome = drops.get(url) or drops.get(norm) or ("kept" if norm in kept else "missing")
            rows.append((url, outcome))
        outcomes[case] = rows
    return outcomes


def unexpected(outcomes) -> List[str]:
    problems = []
    for case, rows in outcomes.items():
        if case == "malformed_line":
            if rows[0][1] == "missing":
                problems.append(f"{case}: no malformed line was counted")
            continue
        seen = {o for _, o in rows}
        allowed = DEMO_CASES[case].ends
        bad = [f"{u} -> {o}" for u, o in rows if o not in allowed]
        if bad:
            problems.append(f"{case}: " + "; ".join(bad))
        if DEMO_CASES[case].both and seen != allowed:
            problems.append(f"{case}: expected one copy kept and one removed, got {sorted(seen)}")
    return problems


def summary(outcomes) -> str:
    lines = ["", "Planted cases (what the demo web hides, and how the pipeline handled each):"]
    for case, rows in outcomes.items():
        how = ", ".join(sorted({o for _, o in rows}))
        lines.append(f"  {case:<22} {how:<48} {DEMO_CASES[case].what if case in DEMO_CASES else ''}")
    return "\n".join(lines)


# what `webtext demo --out DIR` writes (web/, shards/) and what its closing hint writes there (lengths.png, train/)
DEMO_ENTRIES = {"web": {DUMP_NAME}, "shards": None, "lengths.png": None, "train": None}


def check_out(out: Path, overwrite: bool) -> None:
    """The rule `webtext run` applies to --out (pipeline/outdir.py): a new or empty directory, or one this command
    wrote before; anything else needs --overwrite, which writes beside the other files and deletes none of them.
    shards/ itself is then claimed by the run like any --out."""
    if not out.exists() or overwrite:
        return
    if not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    foreign = []
    for entry in sorted(out.iterdir(), key=lambda p: p.name):
        if entry.name not in DEMO_ENTRIES:
            foreign.append(entry.name)
        elif DEMO_ENTRIES[entry.name] is not None and (not entry.is_dir() or any(
                p.name not in DEMO_ENTRIES[entry.name] for p in entry.iterdir())):
            foreign.append(entry.name + "/")
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UsageError(f"--out {out} is not empty and holds no webtext demo ({shown}); choose a new directory, "
                         "or pass --overwrite to write beside those files (none is deleted)")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="webtext demo", description=__doc__.split("\n")[0], allow_abbrev=False,
                                     epilog="Any other option goes to Beam, e.g. --runner FlinkRunner "
                                            "--flink_master=[local] or --runner SparkRunner "
                                            "--spark_master_url=local[2] (after `make engines`; docs/engines.md)")
    parser.add_argument("--out", default="demo_out", help="where the web, dump and shards go (default demo_out)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out that holds other files or another run (no file of yours is deleted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--direct_num_workers", type=int, default=1)
    # Everything else is a Beam option (--runner FlinkRunner --flink_master=[local], --runner SparkRunner ...),
    # checked as `webtext run` checks it.
    args, beam_argv = parser.parse_known_args(argv)
    if args.direct_num_workers > 1:
        beam_argv += [f"--direct_num_workers={args.direct_num_workers}", "--direct_running_mode=multi_processing"]
    out = Path(args.out)
    try:
        options = engines.prepare(parse(beam_argv)[0])
        check_out(out, args.overwrite)
    except UsageError as e:
        print(f"webtext demo: {e}", file=sys.stderr)
        return 2

    shards = out / "shards"
    demo = build_demo(out / "web", seed=args.seed)
    print(f"demo web: {len(demo.planted)} planted cases; dump {demo.dump_path}")
    with demo.web:
        print(f"serving it on {demo.web.proxy_url} (an HTTP proxy: URLs keep their real host names)\n")
        try:
            stats = run(demo_config(demo.dump_path, demo.web.proxy_url, args.quiet), str(shards),
                        options, overwrite=args.overwrite)
        except UsageError as e:   # e.g. shards/ holds another run
            print(f"webtext demo: {e}", file=sys.stderr)
            return 2
    outcomes = case_outcomes(demo.planted, str(shards), stats)
    print(summary(outcomes))
    problems = unexpected(outcomes) + verify(shards) + stats["unbalanced"] + stats.get("metrics_vs_data", [])
    manifest = read_manifest(shards)
    t = manifest["totals"]
    print(f"\nshards: {shards}  (train {t['train']['docs']} docs / {t['train']['tokens']:,} tokens, "
          f"val {t['val']['docs']} docs / {t['val']['tokens']:,} tokens); stats: {shards}/stats.json; "
          f"drop examples: {shards}/_drops/")
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems))
        return 1
    print("every planted case handled; shards verified.\n\nnext:\n"
          f"  webtext shards stats {shards} --plot {out}/lengths.png\n"
          f"  webtext shards show {shards} 0\n"
          f"  webtext train --config tiny --data {shards} --out {out}/train --max-steps 300\n"
          f"  webtext sample --ckpt {out}/train/ckpt.pt --prompt 'The'")
    return 0
