"""One service, one connection: a pool of one. The warm connection sits idle in `idle`, or is checked out by
one lookup or the keeper at a time; a connection is kept only after a clean exchange, with nothing left
unread. `close()` ends every connection in use at once, through the stop token and `abort()`."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

from mynabox.adapters.https.budget import Budget
from mynabox.adapters.https.connection import Connection
from mynabox.adapters.https.resolve import Addresses
from mynabox.adapters.https.tls import Context


class Pool:
    def __init__(self, host: str, port: int, *, context: Context, addresses: Addresses, keep: bool) -> None:
        self.host, self._port = host, port
        self._context = context
        self._addresses = addresses
        self._keep = keep  # False: connection-per-lookup (nothing is kept)
        self.stopping = threading.Event()  # the stop token every connection's budget carries
        self._lock = threading.Lock()
        self.idle: Connection | None = None
        self._in_use = 0
        self._closed = False
        self._active: set[Connection] = set()  # connections a lookup is using now (close() aborts them)
        self._wake_r, self._wake_w = socket.socketpair()  # closed by release()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._released = False

    def state(self) -> tuple[bool, Connection | None, bool]:
        """(closed, the idle connection, whether one is checked out): what the keeper decides on."""
        with self._lock:
            return self._closed, self.idle, self._in_use > 0

    def close(self) -> None:
        self.stopping.set()
        with self._lock:
            self._closed = True
            idle, self.idle = self.idle, None
            active = list(self._active)
        for conn in active:
            conn.abort()
        if idle is not None:
            idle.close()
        self.wake()

    def checkout(self) -> Connection | None:
        """The idle connection if it is still good (it is then ours alone), else None. Either way the caller
        is a user until its `checkin`."""
        with self._lock:
            conn, self.idle = self.idle, None
            self._in_use += 1
        if conn is not None and not conn.clean():
            conn.close()
            conn = None
        return conn

    def enter(self) -> None:
        """A user that will make its own connection (a fresh attempt, the keeper's connect)."""
        with self._lock:
            self._in_use += 1

    def checkin(self, conn: Connection | None, *, keep: bool) -> None:
        """Give a connection back after a clean exchange (keep) or drop it; wake the keeper either way."""
        if conn is not None:
            keep = keep and self._keep and conn.clean()
            if keep:
                self._context.keep_session(conn.sock, self.host)
                conn.last_used = time.monotonic()
        with self._lock:
            self._in_use -= 1
            if conn is not None and keep and self.idle is None and not self._closed:
                self.idle, conn = conn, None
        if conn is not None:
            conn.close()
        self.wake()

    def connect(self, end: float, *, track: bool = False) -> Connection:
        """A connected connection (TCP and TLS done by `end`), or the OSError / SSLError that stopped it.
        `track`: a lookup's, which close() aborts (its handshake too; a TCP connect runs to its timeout)."""
        addresses = self._addresses.get(max(0.01, end - time.monotonic()))
        budget = Budget(self.stopping)
        conn = Connection(self.host, self._port, addresses, context=self._context, budget=budget)
        conn.timeout = max(0.01, end - time.monotonic())
        if track:
            self.track(conn)
        try:
            with conn.budget.until(end):
                conn.connect()
        except BaseException:
            self.untrack(conn)
            conn.close()
            raise
        return conn

    def track(self, conn: Connection) -> None:
        with self._lock:
            self._active.add(conn)
        if self.stopping.is_set():  # close() came while it connected: it could not see this one
            conn.abort()

    def untrack(self, conn: Connection | None) -> None:
        with self._lock:
            self._active.discard(conn)

    def release(self) -> None:
        """Close the wake-up pair, after close(), once no keeper waits on it (the keeper's own last act)."""
        with self._lock:  # a lookup's wake() never writes to a descriptor number reused since
            self._released = True
            self._wake_w.close()
            self._wake_r.close()

    def wake(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            if not self._released:
                self._wake_w.send(b"w")

    def wait_wake(self, sock: socket.socket | None, timeout: float) -> str:
        """Wait for a wake-up, `sock` readable or the timeout: "woken", "readable" or "timeout"."""
        readers: list[Any] = [self._wake_r] if sock is None else [self._wake_r, sock]
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except (OSError, ValueError):  # the connection was closed under us
            return "woken"
        if self._wake_r in ready:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(64):
                    pass
            return "woken"
        return "readable" if ready else "timeout"
