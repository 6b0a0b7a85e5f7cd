"""Where a run leaves cores idle: CPU of each process role, window by window, for one synthetic `webtext run`.

    python bench/busy.py [--docs 1e4] [--seed 1] [--window 5] [--png busy.png] [--one-core]

The same job as bench/scale.py (same generated dump and loopback web, same settings, its default options), run
once with every process of its tree and the web sampled once a second. Prints, per window, the cores each role
kept busy (main process, fetch process, extraction workers, the web the bench fetches from) and the idle share of
the machine, and the main process's largest RSS sampled in the window (every 0.2 s; the kernel's high-water mark
is printed beside it, as short spikes fall between samples); then the idle core-seconds before the extraction
workers first ran, while they ran, and after they last ran, so that one reads which part of a run wastes the cores
and where the main process's memory peaks. `--png` draws the same as stacked areas, the RSS on a second axis.
`--one-core` pins the run to one core (as the 2-core speed-up's baseline is run).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("webtext_bench_scale", BENCH / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)

ORDER = ("main", "fetch-process", "extract-worker", "forkserver", "web")


def rates(timeline, roles: dict, window: float):
    """[(start s, end s, {role: cores busy})] per window, from each process's CPU seconds sampled once a second
    (a process that ended in a window counts up to its last sample)."""
    timeline = [(t, cpu) for t, cpu in timeline if cpu]   # the sample after the run ended has no processes
    out, (t0, c0) = [], timeline[0]
    for t, c in timeline[1:]:
        if t - t0 >= window or t == timeline[-1][0]:
            busy: dict = {}
            for pid, s in c.items():
                role = roles.get(pid, "web")
                busy[role] = busy.get(role, 0.0) + (s - c0.get(pid, 0.0)) / (t - t0)
            out.append((t0, t, busy))
            t0, c0 = t, c
    return out


def phases(windows, cores: int) -> dict:
    """Idle core-seconds before the extraction workers first ran, while they ran, after they last ran."""
    ran = [i for i, (_, _, b) in enumerate(windows) if b.get("extract-worker", 0.0) > 0.05]
    first, last = (ran[0], ran[-1]) if ran else (len(windows), len(windows) - 1)
    out = {"before": 0.0, "during": 0.0, "after": 0.0}
    for i, (a, b, busy) in enumerate(windows):
        idle = max(0.0, cores - sum(busy.values())) * (b - a)
        out["before" if i < first else "after" if i > last else "during"] += idle
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=scale.num, default=10 ** 4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window", type=float, default=5.0, help="seconds per printed window")
    ap.add_argument("--png", help="also draw the windows as stacked areas into this PNG")
    ap.add_argument("--one-core", action="store_true", help="pin the run to one core")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "webtext-scale"))
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    dump, _ = scale.dump_for(work, args.seed, docs=args.docs)
    cores = 1 if args.one_core else len(os.sched_getaffinity(0))
    pin = {min(os.sched_getaffinity(0))} if args.one_core else None
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        web = scale.Web(args.seed, work)
        try:
            r = scale.run_tree(scale.webtext_cmd(dump, Path(tmp) / "o", web.url, []), Path(tmp) / "log",
                               extra_roots=(web.proc.pid,), cores=pin)
        finally:
            web.close()
    if r["rc"] != 0 or len(r["timeline"]) < 2:
        sys.exit(f"busy: the run failed (rc {r['rc']}); its log is printed above")
    windows = rates(r["timeline"], {p["pid"]: p["role"] for p in r["procs"]}, args.window)
    roles = [x for x in ORDER if any(x in b for _, _, b in windows)]
    roles += sorted({x for _, _, b in windows for x in b} - set(roles))
    print(f"{args.docs:,} documents, {r['wall']:.1f} s, {cores} core(s): cores busy per role, per window")
    print(f"{'seconds':>11} " + " ".join(f"{x[:14]:>14}" for x in roles) + f" {'idle':>6} {'main MB':>8}")
    rss = [max((mb for t, mb in r["rss"] if a <= t < b), default=0.0) for a, b, _ in windows]
    for (a, b, busy), mb in zip(windows, rss):
        idle = max(0.0, cores - sum(busy.values())) / cores
        print(f"{a:5.0f}-{b:<5.0f} " + " ".join(f"{busy.get(x, 0.0):14.2f}" for x in roles) + f" {idle:6.0%}"
              f" {mb:8.0f}")
    if r["rss"]:
        t, mb = max(r["rss"], key=lambda x: x[1])
        hwm = max((p["hwm_mb"] for p in r["procs"] if p["role"] == "main"), default=0.0)
        print(f"main process: largest RSS sampled {mb:.0f} MB at {t:.1f} s; high-water mark (VmHWM) {hwm:.0f} MB")
    idle = phases(windows, cores)
    total = sum(idle.values())
    print(f"idle core-seconds: {total:.1f} of {cores * (windows[-1][1] - windows[0][0]):.1f} "
          f"({total / (cores * (windows[-1][1] - windows[0][0])):.0%}); before the extraction workers ran "
          f"{idle['before']:.1f}, while they ran {idle['during']:.1f}, after {idle['after']:.1f}")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        mids = [(a + b) / 2 for a, b, _ in windows]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.stackplot(mids, *[[b.get(x, 0.0) for _, _, b in windows] for x in roles], labels=roles)
        ax.axhline(cores, color="black", linewidth=0.8)
        ax.set(xlabel="seconds", ylabel="cores busy", title=f"webtext run, {args.docs:,} documents, {cores} core(s)")
        ax.legend(loc="upper left", fontsize=8)
        if r["rss"]:
            ax2 = ax.twinx()
            ax2.plot([t for t, _ in r["rss"]], [mb for _, mb in r["rss"]], color="black", linewidth=0.8,
                     label="main process RSS")
            ax2.set_ylabel("main process RSS (MB)")
            ax2.set_ylim(bottom=0)
            ax2.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
