"""Polling for a condition with a deadline: the one helper every stack test and bench waits with."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """True as soon as `condition()` holds, False once `timeout` seconds passed without it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
