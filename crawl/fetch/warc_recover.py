"""Leftovers of a killed capture, recovered or removed by the next run (fetch with --warc-dir, or extract --warc).

A killed writer (crawl/fetch/warc.py) leaves `.outcomes-<id>.jsonl.tmp` and `.fetch-<id>.warc.gz.tmp`, each cut
wherever its write buffer was. What is whole is kept: every WARC record (gzip member) up to the first torn one,
and every outcomes line that parses and whose record (for ok) is among the whole ones. Those are committed under
the usual names, WARC first, outcomes last, and the temp files go; a pair with nothing whole is removed.
A live writer holds an exclusive lock on its local temp files and the kernel drops it when the writer dies, so a
temp file that can be locked is a leftover, whatever its age. Object stores have no such locks (and an object
appears only when its writer closed it): there, a temp object counts as left over after STALE_SECONDS.
Recovering twice gives the same files (a run killed while recovering is recovered again).
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from core import files
from crawl.fetch.warc_read import (HEADER_ROOM, MAX_BYTES, RAW, Unreadable, _parse_record, outcome_lines,
                                   parse_outcome, read_member)

STALE_SECONDS = 3600.0
log = logging.getLogger(__name__)


def _lock(path: str, local: bool) -> Optional[int]:
    """An fd holding the lock on a local leftover, -1 for a stale remote one, None if a live writer has it."""
    if not local:
        meta = FileSystems.match([path])[0].metadata_list
        fresh = meta and time.time() - (meta[0].last_updated_in_seconds or 0) < STALE_SECONDS
        return None if fresh else -1
    fd = os.open(files._local(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = os.fstat(fd)
        if st.st_size == 0 and time.time() - st.st_mtime < 60:
            raise BlockingIOError   # a writer between creating its file and locking it; its first line follows
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _whole_responses(path: str):
    """(offsets of whole response records, end of the last whole record) of a possibly torn WARC file."""
    offsets, end = set(), 0
    with files.open_read(path) as f:
        while True:
            try:
                raw, nxt = read_member(f, end, MAX_BYTES + HEADER_ROOM, find_end=True)
            except Unreadable:
                return offsets, end
            if raw == b"":
                return offsets, end
            if raw is not None:
                try:
                    if _parse_record(raw).rec_type == "response":
                        offsets.add(end)
                except Unreadable:
                    return offsets, end
            end = nxt


def _copy_prefix(src: str, dst: str, n: int) -> None:
    with files.open_read(src) as f, FileSystems.create(dst, compression_type=RAW) as out:
        while n > 0:
            chunk = f.read(min(n, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            n -= len(chunk)


def _recover_pair(warc_dir: str, ident: str, local: bool) -> int:
    """Commit the whole part of one leftover pair; returns the outcomes lines kept."""
    out_tmp = files.join(warc_dir, f".outcomes-{ident}.jsonl.tmp")
    warc_tmp = files.join(warc_dir, f".fetch-{ident}.warc.gz.tmp")
    warc_name = f"fetch-{ident}.warc.gz"
    warc_final = files.join(warc_dir, warc_name)
    source = warc_tmp if files.exists(warc_tmp) else warc_final if files.exists(warc_final) else None
    offsets, end = _whole_responses(source) if source else (set(), 0)
    kept = []
    with files.open_read(out_tmp) as f:
        for _, line in outcome_lines(f):
            try:
                rec = parse_outcome(line.decode("utf-8"))
            except (Unreadable, UnicodeDecodeError):
                continue            # the torn last line, or worse: that link is simply fetched again
            if rec.outcome != "ok" or (rec.warc == warc_name and rec.offset in offsets):
                kept.append(line if line.endswith(b"\n") else line + b"\n")
    if kept and source == warc_tmp:
        if local:
            path = files._local(warc_tmp)
            os.truncate(path, end)      # drop the torn tail; we hold the lock
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            FileSystems.rename([warc_tmp], [warc_final])
        else:
            _copy_prefix(warc_tmp, warc_final, end)
            FileSystems.delete([warc_tmp])
    if kept:
        files.write_atomic(files.join(warc_dir, f"outcomes-{ident}.jsonl"), b"".join(kept))
    FileSystems.delete([p for p in (out_tmp, warc_tmp) if files.exists(p)])
    return len(kept)


def recover_leftovers(warc_dir: str) -> dict:
    """Recover or remove every leftover temp pair in `warc_dir` that no live writer holds."""
    local = files.is_local(warc_dir)
    done = {"pairs": 0, "lines": 0, "removed": 0}
    leftovers = files.match(files.join(warc_dir, ".outcomes-*.jsonl.tmp"))
    orphans = [p for p in files.match(files.join(warc_dir, ".fetch-*.warc.gz.tmp"))
               if files.join(warc_dir, f".outcomes-{_ident(p, '.fetch-', '.warc.gz.tmp')}.jsonl.tmp") not in leftovers]
    for path in leftovers + orphans:
        is_outcomes = os.path.basename(path).startswith(".outcomes-")
        try:
            fd = _lock(path, local)
            if fd is None:
                continue                # a live writer's
            try:
                if is_outcomes:
                    n = _recover_pair(warc_dir, _ident(path, ".outcomes-", ".jsonl.tmp"), local)
                    done["pairs"] += 1
                    done["lines"] += n
                else:
                    FileSystems.delete([path])
                    done["removed"] += 1
            finally:
                if fd >= 0:
                    os.close(fd)
        except (OSError, IOError) as e:   # unreadable or read-only: leave it, say so, go on
            log.warning("could not recover WARC leftover %s: %s", path, e)
    if any(done.values()):
        log.warning("recovered %(lines)d outcomes from %(pairs)d leftover WARC file pairs of a killed run "
                    "(%(removed)d orphan files removed)", done)
    return done


def _ident(path: str, prefix: str, suffix: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name[len(prefix):-len(suffix)]
