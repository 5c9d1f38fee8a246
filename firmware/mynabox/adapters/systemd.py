"""sd_notify: tell systemd we are ready, what we are doing, and that the decision loop is alive.

The protocol is one AF_UNIX datagram of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without ``$NOTIFY_SOCKET`` every call is a no-op. A failed send never raises: the first
failure is logged, the latest is kept in `last_error` (the daemon can show it in its status), and sending is
retried on the next call, since systemd may simply have been busy.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address: str | bytes | None = None
        if address:
            # "@name" is Linux's abstract namespace: a leading NUL byte on the wire.
            self._address = b"\0" + address[1:].encode() if address.startswith("@") else address
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._logged = False
        self.last_error: OSError | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (only if ``WATCHDOG_PID`` is unset or is us)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", ""))
            except ValueError:
                usec = None
            if usec is not None and usec <= 0:
                usec = None
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``WatchdogSec=``; None when no watchdog is set."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def notify(self, *lines: str) -> bool:
        """Send the lines as one datagram. True if sent (or notifications are off), False on failure."""
        if self._address is None:
            return True
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8")  # one line per field
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
        except OSError as err:
            self.last_error = err
            if not self._logged:
                self._logged = True
                log.warning("sd_notify to systemd failed: %s", err.strerror or type(err).__name__)
            self.close()
            return False
        self.last_error = None
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
