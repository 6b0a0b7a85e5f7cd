"""The demo on each local runner: wall time, CPU, peak memory and process counts, and whether the shards agree.

    python bench/runners.py                          # FnApiRunner and, where .engines/prism exists, PrismRunner
    python bench/runners.py FnApiRunner PrismRunner
    python bench/runners.py "PrismRunner --prism_location=/path/to/prism"     # more Beam options for one run

Each run is `webtext demo --quiet --runner R` in a fresh process; its process tree is sampled every 0.1 s from
/proc (RSS of the main process, of the Prism binary, of everything; extraction workers = the forkserver's
children). CPU is the tree's user+system time, each process's last sample summed (a process that lives under
0.1 s is missed). Numbers on this machine are noisy (other load); compare runners within one invocation.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> dict:
    """{pid: (ppid, rss bytes, cmdline, cpu seconds)} of root and its descendants."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                procs[int(entry)] = (int(fields[1]), int(fields[21]) * PAGE, cmd,
                                     (int(fields[11]) + int(fields[12])) / TICK)
            except (OSError, IndexError, ValueError):
                continue
    keep, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            keep[pid] = procs[pid]
            todo += [p for p, v in procs.items() if v[0] == pid]
    return keep


def run(spec: str, out: Path) -> dict:
    runner, *more = shlex.split(spec)
    cmd = [sys.executable, str(ROOT / "webtext.py"), "demo", "--quiet", "--out", str(out), "--runner", runner, *more]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start, cpu = time.time(), {}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"main_mb": 0.0, "prism_mb": 0.0, "total_mb": 0.0, "processes": 0, "extraction_processes": 0}
    while proc.poll() is None:
        tree = _tree(proc.pid)
        cpu.update({(pid, v[2]): v[3] for pid, v in tree.items()})
        servers = {pid for pid, v in tree.items() if "forkserver import main" in v[2]}
        workers = sum(1 for v in tree.values() if v[0] in servers)
        prism = sum(v[1] for v in tree.values() if "/prism" in v[2].split(" ")[0])
        for key, value in (("main_mb", tree.get(proc.pid, (0, 0, ""))[1] / 2**20), ("prism_mb", prism / 2**20),
                           ("total_mb", sum(v[1] for v in tree.values()) / 2**20), ("processes", len(tree)),
                           ("extraction_processes", workers)):
            peak[key] = max(peak[key], value)
        time.sleep(0.1)
    seconds = time.time() - start
    err = proc.stderr.read()
    if proc.returncode != 0:
        return {"runner": runner, "error": (err.strip().splitlines() or ["?"])[-1]}
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.arrow"))}
    return {"runner": runner, "seconds": round(seconds, 1),
            "cpu_s": round(sum(cpu.values()), 1),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in peak.items()},
            "cores": os.cpu_count(), "shards_sha256": hashlib.sha256(json.dumps(digests).encode()).hexdigest()[:16]}


def main(argv):
    from pipeline import engines
    runners = argv or ["FnApiRunner"] + (["PrismRunner"] if engines.unavailable("PrismRunner") is None else [])
    with tempfile.TemporaryDirectory() as tmp:
        for runner in runners:
            print(json.dumps(run(runner, Path(tmp) / runner.split()[0])), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
