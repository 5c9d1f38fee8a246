"""The heap adapter hands glibc's free pages back to the kernel: seen in a fresh interpreter's own RSS."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from mynabox.adapters import heap

# 40 MB in blocks above pymalloc's 512 bytes (glibc's heap), every 8th kept so the heap's top cannot shrink
# by itself: the freed 35 MB stay resident until malloc_trim returns their pages.
PROBE = """
from mynabox.adapters import heap
def rss_kib():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
blocks = [bytearray(4000) for _ in range(10_000)]
kept = blocks[::8]
del blocks
before = rss_kib()
released = heap.release_free_heap()
print(released, before - rss_kib())
"""


def test_the_freed_heap_goes_back_to_the_kernel() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) > 20 * 1024  # KiB: most of the 35 MB freed


def test_without_malloc_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallocTrim:  # a libc without the call (musl)
        def __init__(self, name: object) -> None:
            pass

    heap._malloc_trim.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", NoMallocTrim)
    try:
        assert heap.release_free_heap() is False
    finally:
        heap._malloc_trim.cache_clear()
