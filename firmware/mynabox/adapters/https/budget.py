"""How long one connection's network I/O may still take, and the token that stops it early.

Socket timeouts bound one read, not an exchange: a server that drips a byte a second into its status line,
a header, a chunk-size line or a trailer kept a 10 s limit busy for as long as it liked. So each connection
carries a `Budget` that its TLS socket reads before every handshake, read and write (`tls.DeadlineSocket`),
whichever layer is reading, and the client's stop token, set by `close()`, so a lookup under way ends at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Budget:
    """The monotonic time a connection's I/O must end by (None: only the socket timeout), and the stop token
    it shares with its client. One thread uses a connection at a time, so `end` needs no lock."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self.end: float | None = None

    @contextmanager
    def until(self, end: float) -> Iterator[None]:
        """Every TLS operation in the block ends by `end` (or an enclosing, earlier end)."""
        previous = self.end
        self.end = end if previous is None else min(end, previous)
        try:
            yield
        finally:
            self.end = previous

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No deadline in the block: a non-blocking read must not be made blocking again."""
        previous, self.end = self.end, None
        try:
            yield
        finally:
            self.end = previous

    def left(self) -> float | None:
        """Seconds left (None: no deadline); TimeoutError when the client is closing or the time is up."""
        if self.stopping.is_set():
            raise TimeoutError("the client is closing")
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the lookup's time is up")
        return left


def left(end: float | None) -> float:
    """Seconds left before a limit (never 0: a socket timeout of 0 means non-blocking)."""
    return float("inf") if end is None else max(0.01, end - time.monotonic())
