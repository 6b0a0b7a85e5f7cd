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
