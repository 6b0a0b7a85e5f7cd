"""Keep the local runner's process from holding freed memory (glibc's malloc).

A page body (~100 KB) and its pickle to the extraction pool are freed right after use, but glibc raises its
mmap threshold as it sees such frees (up to 32 MB), after which these buffers come from the heap, which rarely
shrinks: the process keeps the high-water mark of every body it ever held. A fixed threshold keeps buffers of 64
KB and more in their own mappings, returned to the system when freed (measured on `webtext extract --warc`:
21.8 instead of 31.6 KB of RSS growth per page, docs/scaling.md). Same as MALLOC_MMAP_THRESHOLD_=65536.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def return_large_frees(threshold: int = 64 * 1024) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes in this process; False where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl, macOS: nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 4 * threshold))
