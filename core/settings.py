"""Settings for both config systems (the pipeline's TOML sections and the trainer's flat TOML): one user-error type,
one TOML reader, one TOML/flag-value -> frozen-dataclass mapping, and an argparse parser that reports in one line.

A user's mistake (a wrong key, a bad value, a missing file) is a `UsageError` whose message says what to do; the
`webtext` CLI prints it as one line and exits 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tomllib
import typing
from pathlib import Path
from typing import Any, Dict


class UsageError(ValueError):
    """A mistake by the user (bad flag, config key or value, missing file): one line, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting from inside a library call."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def read_toml(path: str) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file {path} not found; pass an existing TOML file to --config")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML: {e}") from None


def parse_date(value) -> int:
    """unix seconds from an int or an ISO date/datetime (UTC), e.g. "2017-12-01"."""
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    d = dt.datetime.fromisoformat(str(value))
    return int((d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)).timestamp())


DATE_FIELDS = ("created_before",)   # unix seconds that a user may write as an ISO date


def coerce(cls, key: str, value):
    """A TOML or command-line value converted to the field's type: lists -> tuples, "1,2" -> (1, 2) for a tuple
    field, "true"/"3"/"0.5" -> bool/int/float, TOML ints where floats are meant. Anything else that does not fit
    the field's type is a ValueError."""
    hint = typing.get_type_hints(cls).get(key)
    if key in DATE_FIELDS and value is not None:
        return parse_date(value)
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
    if isinstance(value, str) and hint in (bool, int, float):
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        return hint(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, float, str) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ValueError(f"expected {hint.__name__}, got {value!r}")
    return value


def dataclass_from(cls, values: Dict[str, Any], section: str = "", where: str = "", base=None):
    """An instance of the dataclass `cls` from `values` on top of `base` (or the defaults). `section` names the
    keys in messages (`links.min_karma`), `where` the file they came from."""
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = dataclasses.asdict(base) if base is not None else {}
    in_where = f" in {where}" if where else ""
    for key, value in values.items():
        name = f"{section}.{key}" if section else key
        if key not in valid:
            scope = f" in [{section}]" if section else ""
            raise UsageError(f"unknown config key '{name}'{in_where}; valid keys{scope}: {', '.join(valid)}")
        try:
            kwargs[key] = coerce(cls, key, value)
        except (TypeError, ValueError) as e:
            raise UsageError(f"bad value for '{name}'{in_where}: {e}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"bad {f'[{section}] ' if section else ''}settings{in_where}: {e}") from None


# ------------------------------------------------------------------------------------------- reference
def field_docs(cls) -> Dict[str, str]:
    """{field: its one-line meaning}: the comment that ends the field's line in the dataclass source (the line
    where the field starts, or the first of its lines that has one). Keeps the reference next to the default."""
    import ast
    import inspect
    import io
    import tokenize

    source = inspect.getsource(cls)
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    docs = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            docs[node.target.id] = next((comments[n] for n in lines if n in comments), "")
    return docs


def type_name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        inner = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(inner) + (" | none" if type(None) in args else "")
    if origin in (tuple, typing.Tuple):
        return "list of " + (type_name(args[0]) if args and args[0] is not Ellipsis else "values")
    return {str: "string", int: "int", float: "float", bool: "bool"}.get(hint, getattr(hint, "__name__", str(hint)))


def describe(cls):
    """(key, type, default, meaning) for every field of a dataclass, in declaration order."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    instance = cls()
    return [(f.name, type_name(hints[f.name]), getattr(instance, f.name), docs.get(f.name, ""))
            for f in dataclasses.fields(cls)]


def toml_literal(value) -> str:
    """`value` as a TOML value that reads back equal (lists in full, strings escaped); None has no TOML form."""
    import json
    import math
    if value is None:
        raise ValueError("None has no TOML form: leave the key out")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)   # a JSON string (ASCII, \uXXXX escapes) is a valid TOML basic string
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:_}" if isinstance(value, int) and abs(value) >= 10_000 else repr(value)


def toml_value(value) -> str:
    """A short display form for the docs' table (`none`, long lists cut); `toml_literal` is the file form."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        shown = ", ".join(toml_value(v) for v in value[:6]) + (", ..." if len(value) > 6 else "")
        return f"[{shown}]"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:_}" if isinstance(value, int) and abs(value) >= 10_000 else repr(value)
