"""Run the fuzz targets (tests/test_fuzz_*.py) longer than the test suite does, and say what they found.

    python bench/fuzz.py --minutes 10                  # every target, an equal share of the time each
    python bench/fuzz.py --minutes 2 --target url      # one target (repeat --target for several)

Each target runs in its own pytest process (a target that crashes the interpreter is reported, not fatal) under
the `long` Hypothesis profile (tests/conftest.py: random, no example database). Its property tests (the @given
ones not marked xfail: a known failure is already a regular test) share the target's time: each is called again
and again with a growing max_examples until its time is up. A case is one call of the test body, counted by
wrapping Hypothesis's inner test. Per target it prints cases tried, failures found, and for each failure the
minimal (shrunk) example Hypothesis reports; keep each one as a regular test (an @example or a plain test).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def targets() -> dict:
    return {p.stem.removeprefix("test_fuzz_"): p for p in sorted(TESTS.glob("test_fuzz_*.py"))}


# ------------------------------------------------------------------------------------------------ pytest plugin
class FuzzPlugin:
    """Inside the worker's pytest: keep the runnable property tests, loop each until its share of time is spent."""

    def __init__(self, seconds: float, result_path: str):
        self.seconds, self.result_path = seconds, result_path
        self.results: dict = {}

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            obj = getattr(item, "obj", None)
            runnable = hasattr(obj, "hypothesis") and item.get_closest_marker("xfail") is None \
                and item.get_closest_marker("skip") is None
            (keep if runnable else drop).append(item)
        items[:] = keep
        if drop:
            config.hook.pytest_deselected(items=drop)
        self.share = self.seconds / max(1, len(keep))
        for item in keep:
            self.results[item.nodeid] = {"cases": 0, "calls": 0, "seconds": 0.0, "failure": None}
            handle = item.obj.hypothesis
            if not getattr(handle.inner_test, "_fuzz_counted", False):
                inner = handle.inner_test

                @functools.wraps(inner)
                def counted(*args, __inner=inner, __id=item.nodeid, **kwargs):
                    self.results[__id]["cases"] += 1
                    return __inner(*args, **kwargs)
                counted._fuzz_counted = True
                handle.inner_test = counted

    def pytest_pyfunc_call(self, pyfuncitem):
        from hypothesis import settings
        obj = pyfuncitem.obj
        args = {a: pyfuncitem.funcargs[a] for a in pyfuncitem._fixtureinfo.argnames}
        base = obj._hypothesis_internal_use_settings
        res, start, chunk = self.results[pyfuncitem.nodeid], time.monotonic(), 50
        try:
            while time.monotonic() - start < self.share:
                t0, cases0 = time.monotonic(), res["cases"]
                obj._hypothesis_internal_use_settings = settings(base, max_examples=chunk)
                res["calls"] += 1
                obj(**args)
                took = time.monotonic() - t0
                if took < min(5.0, self.share / 10):   # grow the chunk while calls are short ...
                    chunk = min(chunk * 2, 100_000)
                per_case = took / max(1, res["cases"] - cases0)   # ... but never past the time that is left
                left = self.share - (time.monotonic() - start)
                chunk = max(1, min(chunk, int(left / per_case)))
        finally:
            obj._hypothesis_internal_use_settings = base
            res["seconds"] = round(time.monotonic() - start, 1)
            self._save()
        return True

    def pytest_runtest_makereport(self, item, call):
        if call.when == "call" and call.excinfo is not None and item.nodeid in self.results:
            exc = call.excinfo.value
            # Hypothesis raises an ExceptionGroup when it found several distinct failures: report each
            excs = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
            self.results[item.nodeid]["failure"] = "\n".join(_describe(e) for e in excs)
            self._save()

    def _save(self):
        with open(self.result_path, "w") as f:
            json.dump(self.results, f)


def _describe(exc: BaseException) -> str:
    notes = "\n".join(n for n in getattr(exc, "__notes__", []) if "reproduce_failure" not in n)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}\n{notes}".strip()


def worker(path: str, seconds: float, result_path: str) -> int:
    import pytest
    os.environ["HYPOTHESIS_PROFILE"] = "long"
    sys.path.insert(0, str(ROOT))
    return pytest.main([path, "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header",
                        "-o", "timeout=0", "--tb=no", "-W", "ignore"],
                       plugins=[FuzzPlugin(seconds, result_path)])


# ------------------------------------------------------------------------------------------------ driver
def run_target(name: str, path: Path, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   HYPOTHESIS_PROFILE="long", TQDM_DISABLE="1")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path), "--seconds", str(seconds),
               "--result", result_path]
        # the worker's own bound: its share plus room for imports and one last (shrinking) call
        try:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=seconds * 1.5 + 300)
            crash = proc.returncode < 0 and f"worker died with signal {-proc.returncode}"
            tail = (proc.stdout + proc.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            crash, tail = "worker did not finish in time (killed)", ""
        results = json.loads(Path(result_path).read_text()) if os.path.exists(result_path) else {}
    return {"target": name, "tests": results, "crash": crash or None, "tail": tail if crash else ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="total time over all targets (default 5)")
    ap.add_argument("--target", action="append", help="a target name (test_fuzz_NAME.py); repeatable")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.seconds, args.result)
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        print("error: hypothesis is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    found = targets()
    chosen = args.target or list(found)
    unknown = [t for t in chosen if t not in found]
    if unknown:
        print(f"error: no target {unknown[0]!r}; targets: {', '.join(found)}", file=sys.stderr)
        return 2
    share = args.minutes * 60 / len(chosen)
    print(f"fuzzing {len(chosen)} target(s) for {args.minutes:g} min ({share:.0f} s each), profile `long`")
    all_results, failures = [], 0
    for name in chosen:
        r = run_target(name, found[name], share)
        all_results.append(r)
        cases = sum(t["cases"] for t in r["tests"].values())
        failed = [(k, t["failure"]) for k, t in r["tests"].items() if t["failure"]]
        failures += len(failed) + bool(r["crash"])
        print(f"{name:<10} {cases:>9,} cases  {len(r['tests'])} property tests  "
              f"{len(failed) + bool(r['crash'])} failure(s)", flush=True)
        for test, t in r["tests"].items():
            print(f"    {test.split('::')[-1]:<58} {t['cases']:>9,} cases in {t['seconds']:>6.1f} s")
        for test, text in failed:
            print(f"  FAILED {test}\n" + re.sub(r"(?m)^", "      ", text))
        if r["crash"]:
            print(f"  CRASHED: {r['crash']}\n" + re.sub(r"(?m)^", "      ", r["tail"]))
    total = sum(t["cases"] for r in all_results for t in r["tests"].values())
    print(f"total: {total:,} cases, {failures} failure(s)")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
