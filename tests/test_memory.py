"""core/memory.py: the local runner's process hands freed memory back (glibc and Arrow)."""
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
def test_glibc_takes_the_settings():
    assert memory.return_large_frees() is True
    assert memory.release_freed() in (True, False)   # 1 when it released pages, 0 when there were none to give
