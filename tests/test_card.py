"""The dataset card: README.md beside the manifest in the HF layout, numbers taken from the run, never written over
a README.md that webtext did not write."""
from test_data_loader import write_prose_shards

from core.shard_format import read_manifest
from pipeline.card import DOMAINS_PNG, LENGTHS_PNG, write_card

STATS = {"stages": {"links": {"in": 10, "out": 7, "dropped": {"low_karma": 3}, "extra": {}, "balanced": True}}}


def test_card_reports_the_run_and_keeps_a_foreign_readme(tmp_path):
    out = write_prose_shards(tmp_path / "shards")
    assert write_card(str(out), STATS)
    card = (out / "README.md").read_text()
    front, body = card.split("---\n", 2)[1:]
    assert "task_categories:\n- text-generation" in front and 'path: "data/train-*.arrow"' in front
    totals = read_manifest(out)["totals"]
    assert f"| train | {totals['train']['shards']} | {totals['train']['docs']:,} | {totals['train']['tokens']:,} |" in body
    assert "| links | " in body and "low_karma 3" in body
    assert (out / LENGTHS_PNG).read_bytes()[:4] == b"\x89PNG" and (out / DOMAINS_PNG).stat().st_size > 1000
    assert "Top subreddits: r/Python (" in body

    (out / "README.md").write_text("# my own notes\n")      # the user's file now: never replaced
    assert write_card(str(out), STATS) is None
    assert (out / "README.md").read_text() == "# my own notes\n"
