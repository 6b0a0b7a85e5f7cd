"""Command-line options of a run, parsed the Beam way: our flags are a PipelineOptions view, so one argv carries
both ours (--input, --out, --config, ...) and Beam's own (--runner, --direct_num_workers, --project, ...)."""
from __future__ import annotations

import argparse
from typing import List

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions

from core.settings import UsageError, read_toml
from pipeline.config import Config, load_config, merge, parse_set

DEFAULT_RUNNER = "FnApiRunner"   # DirectRunner first tries Prism, a Go binary downloaded at first use (offline: slow)
# Beam's --job_server_timeout (default 300 s) also bounds the job-state stream of a portable job (Prism, Flink,
# Spark): at 5 minutes a longer job fails with DEADLINE_EXCEEDED. A crawl runs for hours or days.
JOB_SERVER_TIMEOUT = 86400


# The flags that stand for a config key: flag -> (section, key, argparse keywords). Each is also a
# `--set section.key=...`; the TOML file is overridden by these, and these by --set.
CONFIG_FLAGS = {
    "input": ("run", "inputs", dict(nargs="+", action="extend", metavar="FILE",
                                    help="Pushshift dump(s) (RS_*.zst, .ndjson[.gz|.xz|.bz2]) or URL-list file(s); "
                                         "globs ok")),
    "quiet": ("run", "quiet", dict(action="store_true", help="no progress bars")),
    "http_proxy": ("fetch", "http_proxy", dict(help="route every request through this HTTP proxy")),
    "warc_dir": ("fetch", "warc_dir", dict(help="capture raw responses as WARC here; a rerun skips URLs captured")),
    "min_karma": ("links", "min_karma", dict(type=int, help="default 3")),
    "reddit": ("reddit", "subreddits", dict(metavar="SUB[,SUB...]", help="harvest live through praw ('all' = r/all)")),
    "listing": ("reddit", "listing", dict(choices=["top", "new", "hot", "controversial"])),
    "time_filter": ("reddit", "time_filter", dict(choices=["all", "year", "month", "week", "day", "hour"])),
    "limit": ("reddit", "limit", dict(type=int, help="items per subreddit (API maximum ~1000)")),
    "praw_site": ("reddit", "praw_site", dict(help="praw.ini site with credentials")),
}


class WebtextOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--out", help="output directory (shards, manifest.json, stats.json, _drops/)")
        parser.add_argument("--add-to", "--add_to", dest="add_to", default=None, metavar="CORPUS",
                            help="add this run's documents to a corpus built before, as a new generation: links "
                                 "it fetched are not fetched again, duplicates of its documents are removed, "
                                 "none of its documents is (instead of --out)")
        parser.add_argument("--config", help="TOML config file (see docs/config.md)")
        parser.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                            help="override any config key, e.g. --set fetch.min_delay=0.5 (repeatable)")
        parser.add_argument("--overwrite", action="store_true", default=False,
                            help="write into an --out that holds another run (its webtext files are replaced; "
                                 "no other file is touched); a rerun of the same job needs no flag")
        parser.add_argument("--warc", default=None, metavar="DIR",
                            help="`webtext extract`: read pages from this run's --warc-dir instead of the network")
        for flag, (_, _, kwargs) in CONFIG_FLAGS.items():
            names = [f"--{flag}"] + ([f"--{flag.replace('_', '-')}"] if "_" in flag else [])
            parser.add_argument(*names, dest=flag, default=False if kwargs.get("action") == "store_true" else None,
                                **kwargs)


def help_text(prog: str) -> str:
    parser = argparse.ArgumentParser(prog=prog, description="Build a WebText-style corpus into GPT-2 token shards.",
                                     epilog="Any Beam pipeline option is accepted too: --runner (default "
                                            f"{DEFAULT_RUNNER}), --direct_num_workers N, "
                                            "--direct_running_mode multi_processing, DataflowRunner options, ...")
    WebtextOptions._add_argparse_args(parser)
    return parser.format_help()


def parse(argv: List[str]) -> tuple[PipelineOptions, WebtextOptions]:
    """PipelineOptions for argv; an unknown flag is a UsageError (Beam alone would only log and drop it)."""
    options = PipelineOptions(argv)
    known = set(options.get_all_options(retain_unknown_options=False))
    for arg in argv:
        # Beam reads `--direct-num-workers 2` as unknown and drops it with a log line; ours take both spellings
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if "-" in name and name.replace("-", "_") not in CONFIG_FLAGS and name != "add-to":
            if name.replace("-", "_") in known:
                raise UsageError(f"Beam options are spelled with underscores: --{name.replace('-', '_')}, "
                                 f"not --{name}")
            raise UsageError(f"unknown option --{name}; see `webtext run --help`")
    unknown = set(options.get_all_options(retain_unknown_options=True)) - known
    if unknown:
        raise UsageError(f"unknown option --{sorted(unknown)[0]}; see `webtext run --help`")
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    if not any(arg.split("=", 1)[0] == "--job_server_timeout" for arg in argv):   # the user's value wins
        options.view_as(PortableOptions).job_server_timeout = JOB_SERVER_TIMEOUT
    return options, options.view_as(WebtextOptions)


def config_from(ours: WebtextOptions, require_input: bool = True) -> Config:
    """The run's Config: the TOML file, then the dedicated flags, then --set."""
    flags: dict = {}
    for flag, (section, key, _) in CONFIG_FLAGS.items():
        value = getattr(ours, flag)
        if value is not None and value is not False:
            flags.setdefault(section, {})[key] = value
    overrides = merge(flags, parse_set(ours.set))
    cfg = load_config(ours.config, overrides)
    if cfg.reddit is not None and "subreddits" not in overrides.get("reddit", {}) and \
            "subreddits" not in (read_toml(ours.config).get("reddit") or {} if ours.config else {}):
        # RedditConfig's default is r/all: a lone --listing must not start the biggest harvest there is
        raise UsageError("--listing, --time-filter, --limit and --praw-site belong to a live harvest: say which "
                         "subreddits with --reddit SUB[,SUB...] (--reddit all for r/all)")
    if require_input and not cfg.run.inputs and cfg.reddit is None:
        raise UsageError("nothing to read: give --input FILE... (dumps or URL lists) or --reddit SUB[,SUB...]")
    return cfg
