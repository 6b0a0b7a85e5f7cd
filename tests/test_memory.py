"""core/memory.py: the local runner's process hands freed memory back (glibc and Arrow)."""
import ctypes
import ctypes.util
import platform

import pyarrow as pa
import pytest

from core import memory


def test_arrow_allocates_from_the_system_allocator_after_the_switch():
    before = pa.default_memory_pool()
    try:
        memory.arrow_frees_too()
        assert pa.default_memory_pool().backend_name == "system"
        assert pa.array(range(1000)).to_numpy().sum() == 499500     # allocations go through it
    finally:
        pa.set_memory_pool(before)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallopt are glibc's")
def test_glibc_takes_the_settings_and_gives_freed_heap_pages_back():
    assert memory.return_large_frees() is True
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(32 * 1024) for _ in range(2000)]   # below the mmap threshold: from the heap
    for b in blocks[:-1]:                                    # the last one pins the heap's top
        libc.free(b)
    assert memory.release_freed() is True                    # ~64 MB of free heap pages handed back
    libc.free(blocks[-1])
