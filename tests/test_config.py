"""TOML config: every section maps to its stage's dataclass; mistakes are one-line ConfigErrors."""
import re

import pytest

from core.settings import UsageError
from pipeline.config import load_config, parse_set


def test_defaults_and_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[links]\nmin_karma = 5\naggregate = "sum"\ncreated_before = "2017-12-01"\n'
                    '[fetch]\nmin_delay = 0.5\n[shards]\ntarget_tokens = 8000000\n')
    cfg = load_config(str(path))
    assert cfg.links.min_karma == 5 and cfg.links.aggregate == "sum"
    assert cfg.links.created_before == 1512086400
    assert cfg.fetch.min_delay == 0.5 and cfg.shards.target_tokens == 8_000_000
    assert cfg.reddit is None and load_config().links.min_karma == 3
    assert cfg.to_dict()["links"]["min_karma"] == 5


def test_set_overrides_coerce_types():
    cfg = load_config(None, parse_set(["links.min_karma=10", "links.drop_nsfw=false",
                                       "links.blocked_domains=a.com,b.com", "shards.val_fraction=0.5"]))
    assert cfg.links.min_karma == 10 and cfg.links.drop_nsfw is False
    assert cfg.links.blocked_domains == ("a.com", "b.com") and cfg.shards.val_fraction == 0.5


@pytest.mark.parametrize("text, message", [
    ("[links]\nmin_karm = 3\n", "unknown config key 'links.min_karm'"),
    ("[linkz]\nmin_karma = 3\n", "unknown config section [linkz]"),
    ("[links]\naggregate = 'mean'\n", "aggregate"),
    ("[links\n", "not valid TOML"),
    ("[shards]\ntarget_tokens = 0\n", "target_tokens"),
])
def test_mistakes_are_one_line(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)) as e:
        load_config(str(path))
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_set():
    with pytest.raises(UsageError, match="not found"):
        load_config("/nonexistent/c.toml")
    with pytest.raises(UsageError, match="section.key=value"):
        parse_set(["min_karma=3"])
    with pytest.raises(UsageError, match="links.min_karma"):
        load_config(None, parse_set(["links.min_karma=lots"]))


def test_docs_config_md_is_the_generated_reference():
    """docs/config.md carries `webtext config --markdown` verbatim between its markers, and every key has a meaning."""
    from pathlib import Path

    from pipeline.reference import BEGIN, END, markdown
    from train.config import TrainConfig
    doc = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    generated = markdown(extra=(("train", TrainConfig),))
    assert doc[doc.index(BEGIN):doc.index(END) + len(END)] == generated, "run `webtext config --markdown`"
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    assert len(rows) > 90 and not [r for r in rows if r.endswith("|  |")], "a config key without a meaning"


def test_webtext_config_and_version(capsys):
    from webtext import main
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "[fetch]" in out and "min_karma = 3" in out and "webtext config --train" in out
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("webtext ")
