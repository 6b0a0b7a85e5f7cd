"""Command-line options of a run, parsed the Beam way: our flags are a PipelineOptions view, so one argv carries
both ours (--input, --out, --config, ...) and Beam's own (--runner, --direct_num_workers, --project, ...)."""
from __future__ import annotations

import argparse
from typing import List

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.config import Config, ConfigError, load_config, merge, parse_set

DEFAULT_RUNNER = "FnApiRunner"   # DirectRunner first tries Prism, a Go binary downloaded at first use (offline: slow)


class WebtextOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", nargs="+", action="extend", default=None,
                            help="Pushshift dump(s) (RS_*.zst, .ndjson[.gz|.xz|.bz2]) or URL-list file(s); globs ok")
        parser.add_argument("--out", help="output directory (shards, manifest.json, stats.json, drops/)")
        parser.add_argument("--config", help="TOML config file (see docs/config.md)")
        parser.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                            help="override any config key, e.g. --set fetch.min_delay=0.5 (repeatable)")
        parser.add_argument("--http_proxy", "--http-proxy", default=None,
                            help="route every request through this HTTP proxy (name resolution is the proxy's)")
        parser.add_argument("--min_karma", "--min-karma", type=int, default=None, help="default 3")
        parser.add_argument("--warc_dir", "--warc-dir", default=None,
                            help="capture raw responses as WARC here; a rerun skips URLs already captured")
        parser.add_argument("--reddit", default=None, metavar="SUB[,SUB...]",
                            help="harvest live through praw ('all' = r/all)")
        parser.add_argument("--listing", default=None, choices=["top", "new", "hot", "controversial"])
        parser.add_argument("--time_filter", "--time-filter", default=None,
                            choices=["all", "year", "month", "week", "day", "hour"])
        parser.add_argument("--limit", type=int, default=None, help="items per subreddit (API maximum ~1000)")
        parser.add_argument("--praw_site", "--praw-site", default=None, help="praw.ini site with credentials")
        parser.add_argument("--quiet", action="store_true", default=False, help="no progress bars")


def help_text(prog: str) -> str:
    parser = argparse.ArgumentParser(prog=prog, description="Build a WebText-style corpus into GPT-2 token shards.",
                                     epilog="Any Beam pipeline option is accepted too: --runner (default "
                                            f"{DEFAULT_RUNNER}), --direct_num_workers N, "
                                            "--direct_running_mode multi_processing, DataflowRunner options, ...")
    WebtextOptions._add_argparse_args(parser)
    return parser.format_help()


def parse(argv: List[str]) -> tuple[PipelineOptions, WebtextOptions]:
    """PipelineOptions for argv; an unknown flag is a ConfigError (Beam alone would only log and drop it)."""
    options = PipelineOptions(argv)
    known = set(options.get_all_options(retain_unknown_options=False))
    unknown = set(options.get_all_options(retain_unknown_options=True)) - known
    if unknown:
        raise ConfigError(f"unknown option --{sorted(unknown)[0]}; see `webtext run --help`")
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options, options.view_as(WebtextOptions)


def config_from(ours: WebtextOptions, require_input: bool = True) -> Config:
    """The run's Config: the TOML file, then the dedicated flags, then --set."""
    flags: dict = {}
    if ours.input:
        flags.setdefault("run", {})["inputs"] = list(ours.input)
    if ours.quiet:
        flags.setdefault("run", {})["quiet"] = True
    if ours.http_proxy:
        flags.setdefault("fetch", {})["http_proxy"] = ours.http_proxy
    if ours.warc_dir:
        flags.setdefault("fetch", {})["warc_dir"] = ours.warc_dir
    if ours.min_karma is not None:
        flags.setdefault("links", {})["min_karma"] = ours.min_karma
    reddit = {k: v for k, v in (("subreddits", ours.reddit), ("listing", ours.listing),
                                ("time_filter", ours.time_filter), ("limit", ours.limit),
                                ("praw_site", ours.praw_site)) if v is not None}
    if reddit:
        flags["reddit"] = reddit
    cfg = load_config(ours.config, merge(flags, parse_set(ours.set)))
    if require_input and not cfg.run.inputs and cfg.reddit is None:
        raise ConfigError("nothing to read: give --input FILE... (dumps or URL lists) or --reddit SUB[,SUB...]")
    return cfg
