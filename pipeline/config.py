"""One TOML file configures a run: each [section] is the frozen dataclass of the stage that owns it, as the
fields of `Config` below say (`webtext config` prints every key with its default).

A wrong key or value is a `UsageError` with a one-line message saying what to do (the CLI prints it, no
traceback). Command-line flags override the file; `--set section.key=value` reaches any key.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from core.settings import UsageError, dataclass_from, read_toml
from crawl.fetch.config import FetchConfig
from crawl.links import LinkRules
from crawl.sources.reddit import RedditConfig
from crawl.text.extract import ExtractConfig
from crawl.text.quality import QualityRules
from dedup.config import DedupConfig


@dataclass(frozen=True)
class ShardConfig:
    # Shards are sized by tokens, not counted up front: the number per split follows from the data
    # (pipeline/shards/write.py), so a 9B-token crawl gets ~70 shards and a demo gets a handful.
    target_tokens: int = 2**27       # tokens per shard at most (~256 MB of uint16); one bucket may exceed it
    buckets: int = 4096              # doc_id ranges per split that shards are packed from (the size granularity)
    batch_tokens: int = 2**22        # tokens per Arrow record batch: what a shard writer holds while building one
    val_fraction: float = 0.02       # share of documents (by hash of doc_id) in the val split

    def __post_init__(self):
        limit = 2**31 - 1            # list<uint16> offsets are int32, per record batch
        if not 1 <= self.target_tokens <= 2**40:
            raise ValueError("target_tokens must be in 1..2**40")
        if not 1 <= self.batch_tokens <= limit:
            raise ValueError(f"batch_tokens must be in 1..{limit} (int32 list offsets)")
        if not 1 <= self.buckets <= 2**20:
            raise ValueError("buckets must be in 1..1048576")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")


@dataclass(frozen=True)
class RunSettings:
    inputs: Tuple[str, ...] = ()     # dump / URL-list files or glob patterns
    write_drops: bool = True         # _drops/*.jsonl.gz: example dropped items with stage, reason, url
    drops_per_reason: int = 2000     # examples listed per (stage, reason); exact counts are in stats.json
    max_line: int = 1 << 20          # longest dump line in bytes; a longer one is one malformed_line
    stop_after: str = ""             # "links": end after the link stage (stats and _drops/ still written)
    quiet: bool = False                           # no progress output
    commit_seconds: float = 30.0     # extraction outcomes reach _payloads/ at least this often; a rerun reuses them

    def __post_init__(self):
        if self.drops_per_reason < 0:
            raise ValueError("drops_per_reason must be >= 0")
        if self.max_line < 1024:
            raise ValueError("max_line must be at least 1024 bytes")
        if not self.commit_seconds > 0:
            raise ValueError("commit_seconds must be > 0")
        if self.stop_after not in ("", "links"):
            raise ValueError(f"stop_after must be \"\" or \"links\", not {self.stop_after!r}")


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
        """The config as written into outputs (manifest.json): secrets redacted, so a shard set can be shared."""
        return {name: (_redact(dataclasses.asdict(getattr(self, name))) if getattr(self, name) is not None else None)
                for name in SECTIONS}


_SECRET_KEYS = ("password", "secret", "token", "credential", "api_key")


def _redact(value: Any, key: str = "") -> Any:
    """user:password in any URL (http_proxy, endpoints) and values of secret-named keys become "***"."""
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, key) for v in value)
    if isinstance(value, str) and value and any(s in key.lower() for s in _SECRET_KEYS):
        return "***"
    if isinstance(value, str) and "@" in value and "://" in value:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return value


def _section_type(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]   # Optional[RedditConfig] -> RedditConfig
    return args[0] if args else hint


# section name -> its stage's dataclass, in the order of Config's fields
SECTIONS = {name: _section_type(hint) for name, hint in typing.get_type_hints(Config).items()}


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Dict[str, Any]]] = None) -> Config:
    """Config from a TOML file (or defaults), then `overrides` {section: {key: value}} on top."""
    data: Dict[str, Dict[str, Any]] = read_toml(path) if path else {}
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    sections = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise UsageError(f"unknown config section [{name}]; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise UsageError(f"'{name}' must be a [{name}] table of keys")
        sections[name] = dataclass_from(SECTIONS[name], values, section=name, where=path or "")
    return Config(**sections)


def parse_set(items) -> Dict[str, Dict[str, Any]]:
    """--set section.key=value pairs -> overrides. Lists are comma-separated."""
    out: Dict[str, Dict[str, Any]] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise UsageError(f"--set wants section.key=value, got {item!r}")
        out.setdefault(section, {})[name] = value.strip()
    return out


def merge(*overrides: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for o in overrides:
        for section, values in o.items():
            out.setdefault(section, {}).update(values)
    return out
