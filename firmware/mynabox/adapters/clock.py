"""Is the system clock synchronised? A Pi has no RTC: until NTP syncs, timestamps mean little."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Resolved once: find_library runs `ldconfig -p` in a subprocess, and the daemon asks every second.
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name, use_errno=True)


def clock_synced() -> bool:
    """The kernel's own answer (adjtimex with no modes: read only)."""
    libc = _libc()
    if libc is None:
        return False
    timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0
    state = int(libc.adjtimex(timex))
    return state not in (-1, TIME_ERROR)
