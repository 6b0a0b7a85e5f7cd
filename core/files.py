"""Files through Beam's FileSystems, so a local path, gs:// or any scheme Beam knows works wherever a path is taken.

Writes are whole or nothing: `write_atomic` writes a unique temporary name beside the target, flushes it to disk
(locally: fsync of the file, then of the directory after the rename) and renames it over the target, which
replaces an old file in one step (the old one is never deleted first). On object stores (gs://, s3://) an object
appears only when its upload completes, so there the object is written directly.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from typing import IO, Iterator, List

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path: str) -> str:
    path = str(path)
    return path[len("file://"):] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    return FileSystems.join(str(base), *parts)


def exists(path: str) -> bool:
    return FileSystems.exists(str(path))


def open_read(path: str) -> IO[bytes]:
    """A binary, seekable reader; never decompresses by the file's extension."""
    return FileSystems.open(str(path), compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def read_arrow(path: str):
    """An Arrow IPC file as a pyarrow Table: memory-mapped where local (only the columns a caller touches are read,
    no copy), read whole through Beam's FileSystems otherwise."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    if is_local(str(path)):
        return ipc.open_file(pa.memory_map(str(path).removeprefix("file://"), "r")).read_all()
    return ipc.open_file(pa.py_buffer(read_bytes(str(path)))).read_all()


def match(pattern: str) -> List[str]:
    """Paths matching a glob, sorted; none (not an error) when nothing matches."""
    try:
        return sorted(m.path for m in FileSystems.match([str(pattern)])[0].metadata_list)
    except Exception:   # Beam raises BeamIOError for a location it cannot list
        return []


def temp_name(name: str) -> str:
    """A hidden temporary name for `name` that no other process or retried bundle picks."""
    return f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


@contextmanager
def replacing(path) -> Iterator[str]:
    """A temporary local path beside `path` to write through (torch.save, savefig, a parquet writer); on success it
    is flushed to disk and renamed over `path` in one step, on any failure it is removed."""
    directory, name = os.path.split(os.path.abspath(_local(str(path))))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, temp_name(name))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(directory, name))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(directory)


@contextmanager
def replacing_dir(path) -> Iterator[str]:
    """A temporary directory beside `path` to build an output directory in; renamed to `path` on success (`path`
    must then be absent or an empty directory: callers check), removed on any failure."""
    directory, name = os.path.split(os.path.abspath(_local(str(path))))
    tmp = os.path.join(directory, temp_name(name))
    os.makedirs(tmp)
    try:
        yield tmp
        final = os.path.join(directory, name)
        if os.path.isdir(final):
            os.rmdir(final)   # empty; os.replace cannot replace a directory
        os.replace(tmp, final)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(directory)


@contextmanager
def set_aside(path) -> Iterator[None]:
    """An earlier output directory at `path` (one webtext wrote: callers check) is moved to a hidden temporary name
    while a new one is built at `path`; it is removed once the new one exists, and put back if none was built."""
    path = os.path.abspath(_local(str(path)))
    aside = os.path.join(os.path.dirname(path), temp_name(os.path.basename(path)))
    os.replace(path, aside)
    try:
        yield
    finally:
        if os.path.exists(path):
            shutil.rmtree(aside)
        else:
            os.replace(aside, path)


def write_atomic(path, data: bytes) -> None:
    """Write `path` whole or not at all, whenever the process dies."""
    if not is_local(str(path)):
        with FileSystems.create(str(path)) as f:
            f.write(data)
        return
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_once(path: str, data) -> None:
    """write_atomic, unless `path` is there already: for files named by a hash of their bytes (a retried bundle
    finds its file whole and writes nothing)."""
    if not exists(path):
        write_atomic(path, data)


def delete(paths) -> None:
    """Remove files webtext named (callers choose them by our names); idempotent: a retried step finds them gone.
    Local files go one unlink each (Beam's delete matches every path as a glob first: ~0.5 ms a file, seconds for
    the thousands of scratch files of a run)."""
    remote = []
    for p in paths:
        if not is_local(p):
            remote.append(p)
            continue
        try:
            os.unlink(_local(p))
        except FileNotFoundError:
            pass
    there = [p for p in remote if exists(p)]
    if there:
        FileSystems.delete(there)


def remove_empty_dir(directory: str) -> None:
    """Remove a local scratch folder once it is empty; one that is not there, or holds something else, stays."""
    if is_local(directory):
        try:
            os.rmdir(_local(directory))
        except OSError:
            pass


def fsync_dir(directory: str) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
