"""`webtext`: one command for the whole path.

    webtext demo                         the whole pipeline on the embedded demo web (offline)
    webtext run --input RS_*.zst --out DIR [--config FILE.toml] [--http-proxy URL] [Beam options]
    webtext run --reddit SUB[,SUB] --out DIR    (live harvest through praw)
    webtext extract --warc DIR --out DIR        (documents and shards again from captured WARCs, no network)
    webtext shards ls|stats|show|verify|export ...
    webtext train ... / webtext sample ...
A user mistake prints one line starting with "error:" and exits 2.
"""
from __future__ import annotations

import sys
import warnings
from typing import List, Optional

USAGE = __doc__.split("\n", 2)[2]


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _quiet_imports():
    # Beam's optional GCP client probe logs a warning on import that says nothing to a user of this tool.
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger().addFilter(lambda record: "apitools" not in record.getMessage())
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def cmd_run(argv: List[str], warc: bool = False) -> int:
    from pipeline import engines
    from pipeline.config import ConfigError
    from pipeline.options import config_from, help_text, parse
    from pipeline.runner import run

    if "-h" in argv or "--help" in argv:
        print(help_text("webtext extract" if warc else "webtext run"))
        return 0
    warc_input = None
    if warc:   # `webtext extract --warc DIR`: pages from WARCs instead of the network
        if "--warc" not in argv or argv.index("--warc") + 1 >= len(argv):
            return _fail("give the captured WARC directory: webtext extract --warc DIR --out DIR")
        i = argv.index("--warc")
        warc_input, argv = argv[i + 1], argv[:i] + argv[i + 2:]
        from pathlib import Path
        if not Path(warc_input).is_dir():
            return _fail(f"WARC directory {warc_input} not found; point --warc at a run's --warc-dir")
    try:
        options, ours = parse(argv)
        options = engines.prepare(options)   # FlinkRunner/SparkRunner: the job-server jar `make engines` fetched
        if not ours.out:
            return _fail("give an output directory with --out DIR")
        cfg = config_from(ours, require_input=not warc)
        run(cfg, ours.out, options, warc_input=warc_input)
    except ConfigError as e:
        return _fail(str(e))
    print(f"\nshards: {ours.out}   next: webtext shards stats {ours.out}   webtext train --data {ours.out} "
          f"--out {ours.out}/train")
    return 0


def cmd_demo(argv: List[str]) -> int:
    from pipeline.demo_run import main as demo_main
    return demo_main(argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    _quiet_imports()
    try:
        if command == "run":
            return cmd_run(rest)
        if command == "extract":
            return cmd_run(rest, warc=True)
        if command == "demo":
            return cmd_demo(rest)
        if command == "shards":
            from pipeline.shards_cli import main as shards_main
            return shards_main(rest)
        if command in ("train", "sample"):
            try:
                import torch  # noqa: F401
            except ImportError:
                return _fail("training needs torch: pip install 'webtext[train]' (or `make install`)")
            if command == "train":
                from train.train import main as train_main
                return train_main(rest)
            from train.sample import main as sample_main
            return sample_main(rest)
    except KeyboardInterrupt:
        return _fail("interrupted")
    return _fail(f"unknown command {command!r}; commands: demo, run, extract, shards, train, sample")


if __name__ == "__main__":
    sys.exit(main())
