"""One TOML file configures a run; each section maps onto the frozen dataclass of the stage that owns it.

    [links]    crawl.links.LinkRules          [fetch]   crawl.fetch.FetchConfig
    [extract]  crawl.extract.ExtractConfig    [quality] crawl.quality.QualityRules
    [dedup]    dedup.DedupConfig              [shards]  pipeline.config.ShardConfig
    [reddit]   crawl.reddit.RedditConfig      [run]     inputs, write_drops

A wrong key or value is a `ConfigError` with a one-line message saying what to do (the CLI prints it, no
traceback). Command-line flags override the file; `--set section.key=value` reaches any key.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from crawl.extract import ExtractConfig
from crawl.fetch import FetchConfig
from crawl.links import LinkRules
from crawl.quality import QualityRules
from crawl.reddit import RedditConfig
from dedup.config import DedupConfig


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ShardConfig:
    train_shards: int = 4            # shards per split are fixed up front so names read `-of-N` and runs agree
    val_shards: int = 1
    val_fraction: float = 0.02       # share of documents (by hash of doc_id) in the val split

    def __post_init__(self):
        if self.train_shards < 1 or self.val_shards < 1:
            raise ValueError("train_shards and val_shards must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")


@dataclass(frozen=True)
class RunSettings:
    inputs: Tuple[str, ...] = ()     # dump / URL-list files or glob patterns
    write_drops: bool = True         # drops/*.jsonl: every dropped item with stage, reason, url
    quiet: bool = False


SECTIONS = {
    "run": RunSettings, "links": LinkRules, "fetch": FetchConfig, "extract": ExtractConfig,
    "quality": QualityRules, "dedup": DedupConfig, "shards": ShardConfig, "reddit": RedditConfig,
}


@dataclass(frozen=True)
class Config:
    run: RunSettings = field(default_factory=RunSettings)
    links: LinkRules = field(default_factory=LinkRules)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    quality: QualityRules = field(default_factory=QualityRules)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    reddit: Optional[RedditConfig] = None    # set when harvesting live through praw

    def to_dict(self) -> Dict[str, Any]:
        return {name: (dataclasses.asdict(getattr(self, name)) if getattr(self, name) is not None else None)
                for name in SECTIONS}


def _parse_date(value) -> int:
    """unix seconds from an int or an ISO date/datetime (UTC), e.g. "2017-12-01"."""
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    d = dt.datetime.fromisoformat(str(value))
    return int((d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)).timestamp())


def _coerce(cls, key: str, value):
    """Convert a TOML/CLI value to the field's type (lists -> tuples, strings -> numbers for --set)."""
    hint = typing.get_type_hints(cls).get(key)
    if key == "created_before" and value is not None:
        return _parse_date(value)
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is typing.Union and args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint, origin = args[0], typing.get_origin(args[0])
    if origin in (tuple, typing.Tuple) or hint in (tuple,):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        item = (typing.get_args(hint) or (None,))[0]
        if item in (int, float):   # e.g. --set fetch.retry_statuses=429,503
            value = [item(v) for v in value]
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(value, str):
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if hint in (int, float):
            return hint(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _section(name: str, values: Dict[str, Any], base=None):
    cls = SECTIONS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = dataclasses.asdict(base) if base is not None else {}
    for key, value in values.items():
        if key not in valid:
            raise ConfigError(f"unknown config key '{name}.{key}'; valid keys in [{name}]: {', '.join(valid)}")
        try:
            kwargs[key] = _coerce(cls, key, value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad value for '{name}.{key}': {e}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad [{name}] settings: {e}") from None


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Dict[str, Any]]] = None) -> Config:
    """Config from a TOML file (or defaults), then `overrides` {section: {key: value}} on top."""
    data: Dict[str, Dict[str, Any]] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {path} not found; pass an existing TOML file to --config")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    sections = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section [{name}]; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"'{name}' must be a [{name}] table of keys")
        sections[name] = _section(name, values)
    return Config(**sections)


def parse_set(items) -> Dict[str, Dict[str, Any]]:
    """--set section.key=value pairs -> overrides. Lists are comma-separated."""
    out: Dict[str, Dict[str, Any]] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set wants section.key=value, got {item!r}")
        out.setdefault(section, {})[name] = value.strip()
    return out


def merge(*overrides: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for o in overrides:
        for section, values in o.items():
            out.setdefault(section, {}).update(values)
    return out
