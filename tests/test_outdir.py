"""--out ownership and honest endings: a run never writes over another job's or a user's files without --overwrite,
continues its own job without it, removes its own leftovers; a run that produced nothing, or whose fetches the
network failed, exits 1 with the top reasons (real pipelines on FnApiRunner, no network beyond loopback)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from core.settings import UsageError
from pipeline import outdir
from pipeline.config import load_config
from webtext import main

JOB = outdir.job_of(load_config().to_dict())


def test_fresh_and_same_job_directories_are_taken(tmp_path):
    out = tmp_path / "out"
    outdir.claim(str(out), JOB)
    run = json.loads((out / "run.json").read_text())
    assert run["job"] == JOB and run["pid"] == os.getpid()
    (out / "train-00000-of-00001.arrow").write_bytes(b"x")
    outdir.release(str(out))
    outdir.claim(str(out), JOB)   # the same job again: a resume
    how_only = outdir.job_of(load_config(overrides={"run": {"quiet": True}, "extract": {"processes": 3},
                                                    "fetch": {"http_proxy": "http://127.0.0.1:9"}}).to_dict())
    outdir.claim(str(out), how_only)   # display, parallelism and the proxy's port do not make another job


def test_another_job_needs_overwrite_and_keeps_foreign_files(tmp_path):
    out = tmp_path / "out"
    outdir.claim(str(out), JOB)
    (out / "notes.txt").write_text("mine")
    other = outdir.job_of(load_config(overrides={"links": {"min_karma": 5}}).to_dict())
    with pytest.raises(UsageError, match=r"holds another run \(different links.min_karma\).*--overwrite"):
        outdir.claim(str(out), other)
    outdir.claim(str(out), other, overwrite=True)
    assert json.loads((out / "run.json").read_text())["job"] == other
    assert (out / "notes.txt").read_text() == "mine"


def test_a_manifest_without_run_json_is_compared_by_its_config(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "shards": [],
                                                        "config": load_config().to_dict()}))
    outdir.claim(str(tmp_path), JOB)
    other = outdir.job_of(load_config(overrides={"shards": {"target_tokens": 7000}}).to_dict())
    (tmp_path / "run.json").unlink()
    with pytest.raises(UsageError, match="shards.target_tokens"):
        outdir.claim(str(tmp_path), other)


def test_a_directory_of_user_files_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not empty and holds no webtext run"):
        outdir.claim(str(tmp_path), JOB)
    assert not (tmp_path / "run.json").exists()


HOLDER = """
import json, sys, time
from pipeline import outdir
outdir.claim(sys.argv[1], json.loads(sys.argv[2]))
open(sys.argv[1] + "/train-00000-of-00001.arrow", "w").write("the holder's shard")
open(sys.argv[1] + "/.stats.json.999999999-0badc0de.tmp", "w").write("x")   # a temp file of a gone pid
print("held", flush=True)
time.sleep(60)
"""


def test_a_live_run_holds_its_directory_until_it_dies(tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), json.dumps(JOB)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(UsageError, match=f"another webtext run \\(pid {holder.pid}\\) is writing"):
            outdir.claim(str(out), JOB)
        with pytest.raises(UsageError, match="another webtext run"):
            outdir.claim(str(out), JOB, overwrite=True)     # --overwrite never takes a live run's directory
        urls = tmp_path / "urls.txt"
        urls.write_text("http://example.com/a 5\n")
        code = main(["run", "--input", str(urls), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: another webtext run") and "\n" not in err
        assert "choose another --out" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # not even its stale temp file went
    finally:
        holder.kill()   # SIGKILL: no release() ran, the kernel dropped the lock
        holder.wait()
    outdir.claim(str(out), JOB)   # its process is gone: the directory is free again, the same job goes on
    outdir.release(str(out))


def _race(out_root, rounds, start, results):
    """One contender: claims round i's directory when all contenders are released together."""
    od = outdir
    for i in range(rounds):
        start.wait()
        try:
            od.claim(os.path.join(out_root, str(i)), JOB)
            results.put((i, "won"))
        except UsageError as e:
            results.put((i, str(e)))
        start.wait()   # every contender has tried before anyone lets go


def test_runs_started_at_the_same_instant_exactly_one_claims(tmp_path):
    import multiprocessing
    # fork: a spawned process would import this module and Beam again (seconds each); the children only claim
    ctx = multiprocessing.get_context("fork")
    rounds, n = 30, 3
    start, results = ctx.Barrier(n, timeout=60), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), rounds, start, results)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=120) for _ in range(rounds * n)]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    for i in range(rounds):
        outcome = sorted(r for j, r in got if j == i)
        assert outcome.count("won") == 1, (i, outcome)
        assert all(r.startswith("another webtext run") for r in outcome if r != "won"), outcome


def test_leftovers_of_an_interrupted_run_are_removed(tmp_path):
    outdir.claim(str(tmp_path), JOB)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    staging = tmp_path / "_drops" / "beam-temp-drops-0123abcd"
    staging.mkdir(parents=True)
    (staging / "part").write_text("x")
    stale = tmp_path / f".train-00000-of-00002.arrow.{dead}-0badc0de.tmp"
    live = tmp_path / f".stats.json.{os.getpid()}-00c0ffee.tmp"
    keep = tmp_path / "_drops" / "beam-temp-notes.txt"    # a file, not Beam's staging folder
    for p in (stale, live, keep):
        p.write_text("x")
    outdir.claim(str(tmp_path), JOB)
    assert not staging.exists() and not stale.exists()
    assert live.exists() and keep.exists()


# ------------------------------------------------------------------------------------------- real runs
def _run(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_a_run_with_no_documents_exits_1_with_the_reasons(tmp_path, capsys):
    urls = tmp_path / "urls.txt"
    urls.write_text("https://en.wikipedia.org/wiki/Web 5\nhttps://example.com/a.jpg 9\n")
    code, err = _run(capsys, ["run", "--input", str(urls), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    assert err.startswith("error: no document reached the shards") and "wikipedia" in err and "\n" not in err
    assert (tmp_path / "out" / "stats.json").is_file()   # the accounting is still written


def test_extract_from_a_warc_dir_with_nothing_usable_exits_1(tmp_path, capsys):
    (tmp_path / "warc").mkdir()
    (tmp_path / "warc" / ".pages-00000.warc.gz.1234-deadbeef.tmp").write_bytes(b"torn")
    code, err = _run(capsys, ["extract", "--warc", str(tmp_path / "warc"), "--out", str(tmp_path / "out"),
                              "--quiet"])
    assert code == 1 and "no usable page in the WARCs" in err and "\n" not in err


def test_a_crawl_the_network_failed_exits_1(tmp_path, capsys):
    with socket.socket() as s:   # a port nothing listens on: a dead proxy
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"http://site{h}.example/page{i} 5\n" for h in range(4) for i in range(4)))
    code, err = _run(capsys, ["run", "--input", str(urls), "--out", str(tmp_path / "out"), "--quiet",
                              "--http-proxy", f"http://127.0.0.1:{port}", "--set", "fetch.min_delay=0",
                              "--set", "fetch.connect_timeout=2"])
    assert code == 1, err
    assert "of 16 fetches failed on the network" in err and "--http-proxy" in err and "\n" not in err


def test_a_warc_dir_inside_out_and_a_run_that_wrote_nothing_do_not_block(tmp_path):
    outdir.claim(str(tmp_path / "out"), JOB)    # e.g. stopped at a usage error right after claiming
    other = outdir.job_of(load_config(overrides={"links": {"min_karma": 5}}).to_dict())
    outdir.claim(str(tmp_path / "out"), other)  # nothing but run.json there: free
    (tmp_path / "out" / "warc").mkdir()         # --warc-dir out/warc, created after the claim
    outdir.claim(str(tmp_path / "out"), other)
