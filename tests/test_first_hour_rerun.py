"""#19 item 8, rerun hygiene: `train --overwrite` leaves one run for TensorBoard (its earlier event files and eval.json
go, nobody else's files), `webtext demo --out` refuses a folder of the user's own files as `run` does, the Ctrl-C
hint repeats the user's own command with its --out, `shards ls` warns on a truncated shard, and every export
follows one --out/--overwrite rule (an existing file or directory needs --overwrite; it replaces only an export)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.shards import cli as shards_cli
from core.shard_format import read_manifest
from test_shards import prose_corpus, tokenized, write_dir

ROOT = Path(__file__).resolve().parents[1]


def start(argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "webtext", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), **kwargs)


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return write_dir(tmp_path_factory.mktemp("shards"), [tokenized(d) for d in prose_corpus()[:40]])


def shards(capsys, *argv):
    rc = shards_cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ------------------------------------------------------------------------------------------------ train --overwrite
def test_train_overwrite_leaves_one_run_for_tensorboard_and_no_stale_eval(tmp_path):
    pytest.importorskip("tensorboard")
    import torch
    from test_data_loader import write_prose_shards
    from train import eval as ev
    from train import train

    data = write_prose_shards(tmp_path / "data", train_shards=1)
    run = tmp_path / "run"
    tiny = ["--config", "tiny", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
            "--batch-size", "2", "--max-steps", "2", "--eval-interval", "0", "--quiet", "--data", str(data),
            "--out", str(run)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train.main(tiny) == 0
        assert ev.main(["--ckpt", str(run / "ckpt.pt"), "--data", str(data), "--max-tokens", "64", "--cloze", "0",
                        "--device", "cpu"]) == 0
        first = {p.name for p in run.glob("events.out.tfevents.*")}
        assert len(first) == 1 and (run / "eval.json").is_file()
        foreign = run / "events.out.tfevents.1700000000.elsewhere.1.0"   # another tool's log in the same folder
        foreign.write_bytes(b"not ours")
        (run / "notes.txt").write_text("mine")
        time.sleep(1.1)   # event file names carry the second they were made
        assert train.main(tiny + ["--overwrite"]) == 0
    finally:
        torch.set_num_threads(threads)
    now = {p.name for p in run.glob("events.out.tfevents.*")} - {foreign.name}
    assert len(now) == 1 and not now & first   # today: both runs' events, TensorBoard shows two
    assert not (run / "eval.json").exists()    # today: the old run's numbers stay beside the new checkpoint
    assert foreign.read_bytes() == b"not ours" and (run / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------ demo --out, Ctrl-C
def test_demo_refuses_a_folder_of_the_users_own_files(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("my work")
    proc = start(["demo", "--out", str(mine), "--quiet"])
    try:
        _, err = proc.communicate(timeout=90)   # today the demo goes ahead (minutes) into the folder
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail("webtext demo went ahead in a folder of the user's own files")
    assert proc.returncode == 2 and "holds no webtext demo (chapter1.tex)" in err and "--overwrite" in err
    assert sorted(p.name for p in mine.iterdir()) == ["chapter1.tex"]


def test_ctrl_c_hint_repeats_the_users_command_with_its_out(tmp_path):
    out = tmp_path / "my demo"
    proc = start(["demo", "--out", str(out), "--quiet", "--seed", "3"])
    try:
        deadline = time.time() + 90
        line = ""
        while time.time() < deadline and not line.startswith("demo web:"):
            line = proc.stdout.readline()   # printed once the web is built, well after the handler is installed
            if not line and proc.poll() is not None:
                break
        assert line.startswith("demo web:"), proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 130
    assert f"rerun: webtext demo --out '{out}' --quiet --seed 3" in err, err


# ------------------------------------------------------------------------------------------------ shards ls
def test_ls_warns_on_a_truncated_shard(shard_dir, tmp_path, capsys):
    import shutil
    damaged = tmp_path / "damaged"
    shutil.copytree(shard_dir, damaged)
    entry = read_manifest(damaged)["shards"][0]
    path = damaged / entry["name"]
    path.write_bytes(path.read_bytes()[: entry["bytes"] // 2])
    rc, out, err = shards(capsys, "ls", damaged)
    assert rc == 1 and f"warning: {entry['name']}: {entry['bytes'] // 2:,} bytes on disk" in err
    assert "not the manifest's size" in out and "shards verify" in err
    rc, out, err = shards(capsys, "ls", shard_dir)   # an intact folder: no warning
    assert rc == 0 and err == ""


# ------------------------------------------------------------------------------------------------ export --overwrite
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_file_exports_refuse_an_existing_file_without_overwrite(shard_dir, tmp_path, capsys, fmt):
    out = tmp_path / f"corpus.{fmt}"
    out.write_text("the user's own file")
    rc, _, err = shards(capsys, "export", shard_dir, "--format", fmt, "--out", out, "--quiet")
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert out.read_text() == "the user's own file"   # today jsonl silently overwrites it
    rc, _, err = shards(capsys, "export", shard_dir, "--format", fmt, "--out", out, "--quiet", "--overwrite")
    assert rc == 0 and out.stat().st_size > 1000


def test_hf_export_overwrite_replaces_an_earlier_export_only(shard_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    assert shards(capsys, "export", shard_dir, "--format", "hf", "--out", out, "--quiet")[0] == 0
    rc, _, err = shards(capsys, "export", shard_dir, "--format", "hf", "--out", out, "--quiet")
    assert rc == 2 and "--overwrite" in err
    rc, _, err = shards(capsys, "export", shard_dir, "--format", "hf", "--out", out, "--quiet", "--split", "train",
                        "--overwrite")   # today: an unknown option
    assert rc == 0, err
    assert len(json.loads((out / "dataset_dict.json").read_text())["splits"]) == 1   # the new export, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]              # nothing left aside
    (out / "my-notes.md").write_text("mine")    # a file webtext did not write: the folder is no longer its export
    rc, _, err = shards(capsys, "export", shard_dir, "--format", "hf", "--out", out, "--quiet", "--overwrite")
    assert rc == 2 and "not an earlier" in err and (out / "my-notes.md").read_text() == "mine"
