"""Is the system clock synchronised? A Pi has no RTC: until NTP syncs, timestamps mean little."""

from __future__ import annotations

import ctypes
import ctypes.util

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


def clock_synced() -> bool:
    """The kernel's own answer (adjtimex with no modes: read only)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0
    state = int(libc.adjtimex(timex))
    return state not in (-1, TIME_ERROR)
