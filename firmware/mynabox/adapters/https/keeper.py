"""The keeper thread: one round trip per lookup on a mobile link (60-100 ms RTT), where a new connection
costs TCP + TLS + the request, three round trips. It connects at start, re-connects when the connection
drops, and sends a health request when it has been idle `keepalive_s` (below carrier NAT and load-balancer
idle timeouts)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mynabox.adapters.https.connection import Connection
from mynabox.adapters.https.pool import Pool
from mynabox.adapters.https.retry import NETWORK_ERRORS

log = logging.getLogger("mynabox.adapters.summary_client")


class Keeper(threading.Thread):
    """`ping(conn, end)`: a health request on the connection, True when it answered well by `end`."""

    def __init__(
        self,
        pool: Pool,
        *,
        keepalive_s: float,
        connect_timeout_s: float,
        timeout_s: float,
        ping: Callable[[Connection, float], bool],
    ) -> None:
        super().__init__(name="summary-keepalive", daemon=True)
        self._pool = pool
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._ping_on = ping

    def run(self) -> None:
        """Connect when there is no connection, wait on the idle one (the server closing it wakes us at
        once), send a health request on it when it has been idle `keepalive_s`. The pool's wake-up pair is
        its own to release when it ends (close() may not wait for a connect under way)."""
        try:
            self._keep()
        finally:
            self._pool.release()

    def _keep(self) -> None:
        backoff = 1.0
        while True:
            closed, idle, busy = self._pool.state()
            if closed:
                return
            if idle is None and busy:
                self._pool.wait_wake(None, self._keepalive_s)
            elif idle is None:
                if self._connect():
                    backoff = 1.0
                else:
                    self._pool.wait_wake(None, backoff)
                    backoff = min(backoff * 2, self._keepalive_s)
            else:
                left = self._keepalive_s - (time.monotonic() - idle.last_used)
                woke = self._pool.wait_wake(idle.sock, left) if left > 0 else "timeout"
                if woke == "readable":  # the server closed it (or sent what nobody asked for): drop it
                    conn = self._pool.checkout()
                    self._pool.checkin(conn, keep=conn is not None)
                elif woke == "timeout":
                    self._ping()

    def _connect(self) -> bool:
        self._pool.enter()
        try:
            conn = self._pool.connect(time.monotonic() + self._connect_timeout_s)
        except NETWORK_ERRORS as exc:
            log.info("summary service: cannot connect (%s)", type(exc).__name__)
            self._pool.checkin(None, keep=False)
            return False
        # A fresh connection has had no exchange: keep it (clean() still checks it is connected).
        self._pool.checkin(conn, keep=True)
        return True

    def _ping(self) -> None:
        conn = self._pool.checkout()
        if conn is None:
            self._pool.checkin(None, keep=False)
            return
        ok = self._ping_on(conn, time.monotonic() + self._timeout_s)
        self._pool.checkin(conn, keep=ok)
