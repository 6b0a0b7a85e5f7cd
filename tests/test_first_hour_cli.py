"""#19 items 3 and 5: `webtext config` is a config file (`webtext config > my.toml && webtext run --config my.toml`
works unchanged), no BrokenPipe traceback on a closed pipe, the example config for a month of dumps loads, and
`webtext plan` prints links, hosts, the largest hosts and the crawl's lower bound; after a links-only run the
next-steps hint names what exists."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import zstandard

import webtext
from pipeline.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]


def webtext_process(*argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "webtext", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def printed_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "my.toml"
    done = webtext_process("config")
    assert done.returncode == 0, done.stderr
    path.write_text(done.stdout)
    return path


def dump(path, rows):
    lines = [json.dumps(dict({"id": f"s{i}", "is_self": False, "over_18": False, "subreddit": "news",
                              "created_utc": 1500000000 + i}, **r)).encode() for i, r in enumerate(rows)]
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(line + b"\n" for line in lines)))
    return path


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """9 links on 3 hosts (5 on www.alpha.com), plus a low-karma link, a repost and a self post."""
    rows = [{"url": f"http://{host}/story-{k}", "score": 5}
            for host, n in (("www.alpha.com", 5), ("beta.org", 3), ("gamma.net", 1)) for k in range(n)]
    rows += [{"url": "http://delta.com/low", "score": 1}, {"url": "http://www.alpha.com/story-0", "score": 9},
             {"url": "https://www.reddit.com/r/x/comments/1", "score": 50, "is_self": True}]
    return dump(tmp_path_factory.mktemp("dumps") / "RS_2017-11.zst", rows)


# ------------------------------------------------------------------------------------------------ item 3
def test_config_output_is_valid_toml_that_loads_back_to_the_defaults(printed_config):
    text = printed_config.read_text()
    data = tomllib.loads(text)   # today: `none` and lists cut with `...` are not TOML
    assert set(data) == {"run", "links", "fetch", "extract", "quality", "dedup", "shards"}
    assert not any("..." in line.split("#", 1)[0] for line in text.splitlines())
    # None defaults are commented out, so the file states every default exactly
    assert "# created_before =" in text and "created_before" not in data["links"]
    assert load_config(str(printed_config)) == Config()
    assert data["links"]["blocked_domains"] == list(Config().links.blocked_domains)   # the long list in full
    assert "# [reddit]" in text   # present but commented: no live harvest by accident


def test_config_train_is_a_trainer_config_file(tmp_path, capsys):
    pytest.importorskip("torch")
    from train.config import TrainConfig
    from train.config import load_config as load_train_config
    assert webtext.main(["config", "--train"]) == 0
    (tmp_path / "train.toml").write_text(capsys.readouterr().out)
    assert load_train_config(str(tmp_path / "train.toml")) == TrainConfig()


def test_printed_config_runs_unchanged_links_only_with_a_hint_that_fits(printed_config, month, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--config", str(printed_config), "--input", str(month), "--out", str(out), "--quiet",
            "--set", "run.stop_after=links"]
    assert webtext.main(argv) == 0
    printed = capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())["stages"]
    assert stats["links"]["out"] == 9 and stats["fetch"]["in"] == 0
    hint = printed[printed.index("links only"):]
    # today: "next: webtext shards stats OUT   webtext train --data OUT", which fail on a links-only output
    assert "shards stats" not in hint and "train" not in hint
    assert f"webtext plan --config {printed_config} --input {month} --quiet" in hint
    assert "--out" not in hint.split("next:")[1] and "stop_after=links" not in hint.split("next:")[1].split("(")[0]


@pytest.mark.parametrize("argv", [["config"], ["--help"]])
def test_a_closed_pipe_ends_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)   # the reader is gone before anything is written: `webtext config | head -0`
    try:
        done = subprocess.run([sys.executable, "-m", "webtext", *argv], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0


def test_example_month_config_loads():
    cfg = load_config(str(ROOT / "examples" / "reddit-month.toml"))
    assert cfg.run.inputs and all(p.endswith(".zst") for p in cfg.run.inputs)
    assert cfg.fetch.contact and cfg.fetch.warc_dir and cfg.links.min_karma == 3


# ------------------------------------------------------------------------------------------------ item 5
def test_plan_prints_links_hosts_largest_hosts_and_the_lower_bound(month, capsys):
    assert webtext.main(["plan", "--input", str(month), "--quiet", "--top", "2", "--set", "fetch.min_delay=2",
                         "--set", "fetch.global_concurrency=2"]) == 0
    out = capsys.readouterr().out
    assert "12 dump lines -> 9 links on 3 distinct hosts" in out
    largest = out[out.index("largest 2 hosts"):out.index("crawl lower bound")]
    assert "www.alpha.com" in largest and "beta.org" in largest and "gamma.net" not in largest
    assert "5   55.6%" in largest
    # max(5 links x 2 s, 9 links x 2 s / (2 threads x 1 worker)) = max(10 s, 9 s)
    assert "crawl lower bound: 10 s" in out and "= 10 s" in out and "= 9 s" in out


def test_plan_with_more_threads_is_bound_by_the_largest_host_and_with_workers_by_the_total(month, capsys):
    assert webtext.main(["plan", "--input", str(month), "--quiet", "--workers", "1", "--set", "fetch.min_delay=100",
                         "--set", "fetch.global_concurrency=1"]) == 0
    assert "crawl lower bound: 15m 00s" in capsys.readouterr().out   # 9 x 100 s / 1 thread


def test_plan_of_the_example_config_names_a_missing_dump_in_one_line(capsys):
    assert webtext.main(["plan", "--config", str(ROOT / "examples" / "reddit-month.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no input file matches") and "RS_2017-11.zst" in err
