"""One name for each thing, everywhere, and the docs' numbers are the code's defaults: the split a user sees is
`validation` in every Hugging Face view (card and export), the drop examples' folder is `_drops/` in the card,
`run --help` and the docs, the card says how many drops are listed, and the numbers the README and
docs/config.md quote are read back from the code."""
import json
import re
from pathlib import Path

import pytest

from test_data_loader import write_prose_shards

from crawl.text.extract import ExtractConfig
from dedup.config import DedupConfig
from dedup.minhash import banding
from pipeline.card import write_card
from pipeline.config import RunSettings
from pipeline.drops import DROPS_DIR

ROOT = Path(__file__).resolve().parents[1]
STATS = {"stages": {"links": {"in": 10, "out": 7, "dropped": {"low_karma": 3}, "extra": {}, "balanced": True}}}
BARE_DROPS = re.compile(r"(?<![\w/._-])drops/")     # `drops/` not preceded by `_` (or part of a longer path)


def _docs():
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}


def test_the_drops_folder_has_one_name(tmp_path, capsys):
    assert DROPS_DIR == "_drops"
    wrong = {name: BARE_DROPS.findall(text) for name, text in _docs().items() if BARE_DROPS.search(text)}
    assert not wrong, wrong
    from webtext import main
    try:
        main(["run", "--help"])
    except SystemExit:     # argparse's way out of --help
        pass
    assert "_drops/" in capsys.readouterr().out

    out = write_prose_shards(tmp_path / "shards")
    write_card(str(out), STATS)
    card = (out / "README.md").read_text()
    assert not BARE_DROPS.search(card) and "_drops/" in card
    assert "every dropped item is listed" not in card
    assert f"at most {RunSettings.drops_per_reason:,} per stage and reason" in card


def test_the_validation_split_has_one_name_in_every_hugging_face_view(tmp_path, capsys):
    from pipeline.shards import cli
    out = write_prose_shards(tmp_path / "shards")
    write_card(str(out), STATS)
    front = (out / "README.md").read_text().split("---\n")[1]
    card_splits = re.findall(r"- split: (\w+)", front)
    assert card_splits == ["train", "validation"]
    assert cli.main(["export", str(out), "--format", "hf", "--out", str(tmp_path / "hf"), "--quiet"]) == 0
    assert json.loads((tmp_path / "hf" / "dataset_dict.json").read_text())["splits"] == card_splits
    assert (tmp_path / "hf" / "validation" / "dataset_info.json").exists()


def test_docs_quote_the_defaults():
    config_md = (ROOT / "docs" / "config.md").read_text()
    notes = config_md[config_md.index("## Notes on the defaults"):config_md.index("## Every key")]
    chars = re.search(r"the first ([\d,]+) characters\s+\(`extract.language_chars`\) decide", notes)
    assert chars and int(chars.group(1).replace(",", "")) == ExtractConfig().language_chars, notes
    dedup = DedupConfig()
    bands, rows = banding(dedup)
    assert f"({bands} × {rows} for {dedup.threshold})" in notes
    assert f"estimated Jaccard ≥ {dedup.threshold}" in notes and f"`min_recall` ({dedup.min_recall})" in notes
    assert f"full {dedup.num_perm}-value signature" in notes

    readme = (ROOT / "README.md").read_text()
    assert f"up to {RunSettings.drops_per_reason:,} examples of each" in readme
    steps = re.search(r"^DEMO_STEPS \?= (\d+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert f"for {steps} CPU steps" in readme and "`make demo-full`" in readme
    assert "../shared/corpus" in readme.split("| test suite |")[1].split("\n")[0]   # what a fresh clone skips
