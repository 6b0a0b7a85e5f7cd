"""The one forkserver (core/forkserver.py): a Ctrl-C that reaches it while it is still importing its preload
modules neither kills it nor prints a traceback under the run's one-line message."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import multiprocessing.forkserver as mpfs
    from core import forkserver

    def hello():
        pass

    if __name__ == "__main__":
        ctx = forkserver.context("slow_preload")      # its import takes 2 s inside the server

        def interrupt():
            for _ in range(100):                      # as soon as the server exists, while it imports
                pid = getattr(mpfs._forkserver, "_forkserver_pid", None)
                if pid:
                    time.sleep(0.5)
                    os.kill(pid, signal.SIGINT)
                    return
                time.sleep(0.02)

        threading.Thread(target=interrupt).start()
        p = ctx.Process(target=hello)
        p.start()
        p.join(30)
        print("exitcode", p.exitcode)
""")


def test_ctrl_c_during_the_servers_imports_is_ignored(tmp_path):
    (tmp_path / "slow_preload.py").write_text("import time\ntime.sleep(2)\n")
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, str(tmp_path / "run.py")], capture_output=True, text=True, timeout=120,
                       env=env, cwd=tmp_path)
    assert "exitcode 0" in r.stdout, (r.stdout, r.stderr)
    assert "KeyboardInterrupt" not in r.stderr and "Traceback" not in r.stderr, r.stderr


START = textwrap.dedent("""
    import dataclasses, sys
    import multiprocessing.forkserver as mpfs
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipeline.config import Config, RunSettings
    from pipeline.runner import start_worker_server

    if __name__ == "__main__":
        links_only = dataclasses.replace(Config(), run=RunSettings(stop_after="links"))
        for cfg, args in ((Config(), ["--runner=PrismRunner"]),
                          (Config(), ["--runner=FnApiRunner", "--direct_running_mode=multi_processing"]),
                          (links_only, ["--runner=FnApiRunner"])):
            print("started", start_worker_server(cfg, PipelineOptions(args)), mpfs._forkserver._forkserver_pid)
        print("started", start_worker_server(Config(), PipelineOptions(["--runner=FnApiRunner"])),
              mpfs._forkserver._forkserver_pid is not None, mpfs._forkserver._preload_modules)
""")


def test_a_local_run_starts_the_server_before_its_first_worker(tmp_path):
    """The server's imports (~2 s) overlap building the job and reading the dump: `run` starts it where this
    process will fork the workers (the local runner in memory), with the modules the pool and the fetch process
    declare, and nowhere else (Prism, Beam's own worker processes, a links-only run)."""
    (tmp_path / "run.py").write_text(START)
    r = subprocess.run([sys.executable, str(tmp_path / "run.py")], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    lines = r.stdout.splitlines()
    assert lines[:3] == ["started False None"] * 3, (r.stdout, r.stderr)
    assert lines[3].startswith("started True True ["), (r.stdout, r.stderr)
    for module in ("core.forkserver_init", "crawl.text.pool", "crawl.fetch.procs", "pipeline.per_document"):
        assert f"'{module}'" in lines[3]
