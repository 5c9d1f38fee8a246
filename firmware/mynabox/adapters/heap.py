"""Hand the C heap's free pages back to the kernel (glibc's malloc_trim), called once the box is idle after a
read. glibc keeps what OpenSSL, SQLite and CPython's larger objects free inside its heaps: only the main
heap's top, past a threshold, goes back by itself; malloc_trim(0) returns every whole free page of every
arena (README, "Memory"). Where libc has no malloc_trim (musl), nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any | None:
    # The process's own symbols (dlopen(NULL)) include libc's, as for adjtimex in adapters/clock.py.
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """The C heap's free pages back to the kernel; True when some went back, False where there is no call."""
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))
