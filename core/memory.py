"""Keep the local runner's process from holding freed memory (glibc's malloc).

A page body (~100 KB) and its pickle to the extraction pool are freed right after use, but glibc raises its
mmap threshold as it sees such frees (up to 32 MB), after which these buffers come from the heap, which rarely
shrinks: the process keeps the high-water mark of every body it ever held. A fixed threshold keeps buffers of 64
KB and more in their own mappings, returned to the system when freed (measured on `webtext extract --warc`:
21.8 instead of 31.6 KB of RSS growth per page, docs/scaling.md). Same as MALLOC_MMAP_THRESHOLD_=65536.

Arrow allocates from its own pool (mimalloc in pyarrow's wheels), which keeps what the shard writer freed: at the
end of a 10^4-document run the main process's RSS rose ~85 MB for shards of 12 MB. `arrow_frees_too` puts Arrow on
the system allocator, whose large buffers then follow the threshold above.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _glibc(name: str):
    """glibc's function `name`, or None where there is none (musl, macOS: nothing to tune)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def return_large_frees(threshold: int = 64 * 1024) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes in this process; False where there is no glibc."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 4 * threshold))


def arrow_frees_too() -> None:
    """Arrow's default memory pool -> the system allocator (malloc), in this process."""
    import pyarrow as pa
    pa.set_memory_pool(pa.system_memory_pool())


def release_freed() -> bool:
    """Give the free pages inside glibc's heap back to the system (malloc_trim): after the local runner has run
    the pipeline, what it freed would otherwise stay in this process's RSS under the index and the card."""
    trim = _glibc("malloc_trim")
    return bool(trim(0)) if trim is not None else False
