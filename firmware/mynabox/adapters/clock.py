"""Is the system clock synchronised? A Pi has no RTC: until NTP syncs, timestamps mean little."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@functools.cache
def _adjtimex() -> Any | None:
    # The process's own symbols (dlopen(NULL)) include libc's. ctypes.util.find_library would run
    # `ldconfig -p` in a subprocess and keep subprocess and tempfile loaded for the daemon's lifetime.
    return getattr(ctypes.CDLL(None, use_errno=True), "adjtimex", None)


def clock_synced() -> bool:
    """The kernel's own answer (adjtimex with no modes: read only); False where libc has no adjtimex."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return False
    timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0
    state = int(adjtimex(timex))
    return state not in (-1, TIME_ERROR)
