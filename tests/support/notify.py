"""The systemd side of sd_notify for tests and benches: a datagram socket recording every message."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notify-socket", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                self.messages.append((time.monotonic(), line))

    def seen(self, line: str, since: float = 0.0) -> int:
        """How many times `line` arrived at or after `since` (time.monotonic())."""
        return sum(1 for at, text in list(self.messages) if text == line and at >= since)

    def first(self, line: str, since: float = 0.0) -> float | None:
        """When `line` first arrived at or after `since` (time.monotonic()), None if it has not."""
        return next((at for at, text in list(self.messages) if text == line and at >= since), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
