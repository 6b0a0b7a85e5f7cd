"""Whose is this --out directory? A run claims it before writing anything, and never takes one of another job.

A run writes `run.json` (its job: the config that decides what the output holds, the inputs among it) into --out
first. A later run may write into the same directory without --overwrite when
  - the directory does not exist or is empty, or
  - its run.json (or, from a run that left none, its manifest.json's config) names the same job: a rerun after a
    crash or Ctrl-C, which with --warc-dir fetches only what was not committed yet.
Anything else (another job's output, a directory of your own files) needs --overwrite, which replaces webtext's
files of the other run and leaves every other file where it is: webtext never deletes what it did not write.
Settings that change only how a run goes, not what it produces, are not part of the job (see HOW_KEYS).

Claiming also removes what an interrupted run of webtext left behind: Beam's `beam-temp-*` folders and the hidden
temporary files of core/files.py whose process is gone. One run at a time per directory: the claim is an
exclusive flock on the directory itself, taken before anything is looked at and held until release() or the
process's end (the kernel drops it when a run dies, so a killed run leaves no stale claim). Two runs started at
the same instant cannot both pass the checks; the loser stops with one line. run.json names the process too
(where the filesystem has no flock, its live pid is what holds the directory).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import threading
from typing import Dict, Optional

from core import files
from core.settings import UsageError

RUN_FILE = "run.json"
MANIFEST = "manifest.json"
# section.key -> not part of the job: display, parallelism, the proxy's address, where WARCs go.
HOW_KEYS = {("run", "quiet"), ("run", "commit_seconds"), ("extract", "processes"), ("extract", "batch_size"), ("fetch", "http_proxy"),
            ("fetch", "warc_dir")}
TEMP_FILE = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp$")   # core.files.temp_name


def job_of(config: dict, warc_input: Optional[str] = None) -> dict:
    """The part of a run's config (Config.to_dict()) that decides its output, plus the WARC source if any."""
    job = {section: ({k: v for k, v in values.items() if (section, k) not in HOW_KEYS}
                     if isinstance(values, dict) else values)
           for section, values in config.items()}
    if warc_input:
        job["warc_input"] = os.path.abspath(warc_input) if files.is_local(warc_input) else warc_input
    return json.loads(json.dumps(job))   # tuples -> lists, as read back from JSON


def _differences(old: dict, new: dict) -> list:
    keys = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            keys.append(section)
    return keys


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_HELD: Dict[str, int] = {}     # real path of a claimed directory -> the fd holding its lock (this process)
_HELD_LOCK = threading.Lock()


def _busy(out_dir: str, pid=None) -> UsageError:
    who = f"another webtext run (pid {pid})" if isinstance(pid, int) else "another webtext run"
    return UsageError(f"{who} is writing {out_dir}; wait for it to finish or stop it, or choose another --out")


def _lock(out_dir: str) -> bool:
    """Hold an exclusive flock on the directory for this process (again: a no-op). False where the filesystem
    has no flock; UsageError if another process holds it."""
    key = os.path.realpath(out_dir)
    with _HELD_LOCK:
        if key in _HELD:
            return True
        fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)   # not inherited by exec'd children (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                run = _read_json(os.path.join(out_dir, RUN_FILE)) or {}
                raise _busy(out_dir, run.get("pid")) from None
            return False                                       # e.g. ENOLCK: fall back to run.json's pid
        _HELD[key] = fd
        return True


def lock(out_dir: str) -> None:
    """Hold `out_dir` for this process (no job check): what an addition takes on the corpus it grows."""
    _lock(out_dir.removeprefix("file://"))


read_json = _read_json


def _unlock(out_dir: str) -> None:
    with _HELD_LOCK:
        fd = _HELD.pop(os.path.realpath(out_dir), None)
    if fd is not None:
        os.close(fd)                                           # closing the only fd releases the flock


def claim(out_dir: str, job: dict, overwrite: bool = False) -> None:
    """Take `out_dir` for this run or raise UsageError saying why not; then remove an earlier run's leftovers.
    The directory stays locked until release() or the end of this process."""
    if not files.is_local(out_dir):   # gs://...: no listing-based checks; use a fresh prefix per job there
        return
    out_dir = out_dir.removeprefix("file://")
    os.makedirs(out_dir, exist_ok=True)   # to lock it: an empty directory is free whatever happens next
    locked = _lock(out_dir)
    try:
        _check(out_dir, job, overwrite, locked)
    except BaseException:
        _unlock(out_dir)
        raise


def _check(out_dir: str, job: dict, overwrite: bool, locked: bool) -> None:
    # a run.json alone is a run that stopped before writing anything (e.g. at a usage error): nothing to protect
    entries = [e for e in sorted(os.listdir(out_dir)) if e != RUN_FILE]
    run = _read_json(os.path.join(out_dir, RUN_FILE))
    if run is not None and not locked:   # no flock here: a live pid in run.json holds the directory
        pid, host = run.get("pid"), run.get("host")
        if isinstance(pid, int) and pid != os.getpid() and host == socket.gethostname() and _alive(pid):
            raise _busy(out_dir, pid)
    previous = run.get("job") if run is not None else None
    manifest = _read_json(os.path.join(out_dir, MANIFEST)) if previous is None else None
    if previous is None and manifest is not None and "format_version" in manifest:
        previous = job_of(manifest.get("config") or {}, None)
        previous.pop("warc_input", None)
        job_cmp = {k: v for k, v in job.items() if k != "warc_input"}
    else:
        job_cmp = job
    grown = (manifest or _read_json(os.path.join(out_dir, MANIFEST)) or {}).get("generations") or []
    if not overwrite and len(grown) > 1:   # a rerun would write generation 0 alone and drop the others' shards
        raise UsageError(f"--out {out_dir} is a corpus grown by --add-to ({len(grown)} generations); add to it with "
                         f"--add-to {out_dir}, or choose a new directory to build it again")
    if not overwrite and entries:
        if previous is None:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UsageError(f"--out {out_dir} is not empty and holds no webtext run ({shown}); choose a new "
                             "directory, or pass --overwrite to write beside those files (none is deleted)")
        changed = _differences(previous, job_cmp)
        if changed:
            shown = ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "")
            raise UsageError(f"--out {out_dir} holds another run (different {shown}); choose a new directory, "
                             "or pass --overwrite to replace that run's files")
    if overwrite and previous is not None and _differences(previous, job_cmp):
        remove_reusables(out_dir)   # another job's payloads and indexes must not be taken for this one's
    remove_leftovers(out_dir)
    files.write_atomic(os.path.join(out_dir, RUN_FILE), json.dumps(
        {"job": job, "pid": os.getpid(), "host": socket.gethostname()}, indent=2, sort_keys=True).encode())


def remove_leftovers(out_dir: str) -> list:
    """Remove what an interrupted webtext run left in out_dir, its _drops/, data/ and _payloads/: Beam's
    beam-temp-* folders (WriteToText's staging) and our hidden temporary files whose writing process is gone.
    Returns the paths."""
    removed = []
    index = os.path.join(out_dir, "_index")   # a generation's index is built in a hidden folder, then renamed
    for directory in (out_dir, os.path.join(out_dir, "_drops"), os.path.join(out_dir, "data"),   # data/: shards
                      os.path.join(out_dir, "_payloads"), index,
                      os.path.join(out_dir, ".webtext-bands"), os.path.join(out_dir, ".webtext-buckets")):   # scratch
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            temp = TEMP_FILE.match(name)
            if name.startswith("beam-temp-") and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif temp and os.path.isfile(path) and not _alive(int(temp.group(1))):
                os.unlink(path)
            elif temp and directory == index and os.path.isdir(path) and not _alive(int(temp.group(1))):
                shutil.rmtree(path, ignore_errors=True)
            else:
                continue
            removed.append(path)
    return removed


PAYLOAD_FILE = re.compile(r"^[0-9a-f]{20}\.(arrow|drops)$")         # core/payloads.py names
INDEX_FILE = re.compile(r"^(sketches\.arrow|(band|fp)_(keys|rows)\.npy|urls\.npy)$")   # dedup/index.py, crawl/seen.py
GENERATION = re.compile(r"^\d{5}$")


def remove_reusables(out_dir: str) -> list:
    """What a rerun of the same job would reuse, written by webtext for another job: payload files, the URL and
    sketch indexes, link part files, the run folders of additions. Only files of our names are removed."""
    removed = []

    def remove_matching(directory, pattern):
        for name in (os.listdir(directory) if os.path.isdir(directory) else []):
            if pattern.match(name) and os.path.isfile(os.path.join(directory, name)):
                os.unlink(os.path.join(directory, name))
                removed.append(os.path.join(directory, name))
        try:
            os.rmdir(directory)
        except OSError:
            pass

    remove_matching(os.path.join(out_dir, "_payloads"), PAYLOAD_FILE)
    remove_matching(os.path.join(out_dir, ".webtext-links"), re.compile(r"^[0-9a-f]{20}\.npy$"))
    for parent in ("_index", "_generations"):
        top = os.path.join(out_dir, parent)
        for name in (os.listdir(top) if os.path.isdir(top) else []):
            if GENERATION.match(name):
                folder = os.path.join(top, name)
                if parent == "_index":
                    remove_matching(folder, INDEX_FILE)
                elif os.path.isfile(os.path.join(folder, RUN_FILE)):   # an addition's run folder: ours
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        try:
            os.rmdir(top)
        except OSError:
            pass
    return removed


def release(out_dir: str) -> None:
    """The run is over: run.json stays (it says which job the directory holds) without a live pid."""
    path = os.path.join(out_dir.removeprefix("file://"), RUN_FILE)
    run = _read_json(path) if files.is_local(out_dir) else None
    if run is not None and run.get("pid") == os.getpid():
        run["pid"] = None
        files.write_atomic(path, json.dumps(run, indent=2, sort_keys=True).encode())
    if files.is_local(out_dir):
        _unlock(out_dir.removeprefix("file://"))
