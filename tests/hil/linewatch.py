"""Output lines' levels streamed over TCP, for the host that answers the emulated box's bench prompts.

Polls level files (gpio-sim's `sim_gpioN/value` of the LED and the buzzer) every few milliseconds and sends
a line `<monotonic s> <level> <level>...` on every change and, as a heartbeat, every 0.1 s. A beep is over
before the suite asks whether it was heard, so its edges must be caught while it sounds. Standard library
only: it runs with the box's own Python.

    python linewatch.py HOST PORT FILE [FILE]...
"""

from __future__ import annotations

import os
import socket
import sys
import time

POLL_S = 0.003
HEARTBEAT_S = 0.1


def main(argv: list[str]) -> int:
    host, port = argv[0], int(argv[1])
    # opened once, read at offset 0 each time (a sysfs attribute is shown afresh): cheap enough under TCG
    # to catch the 'attention' pattern's 80 ms gaps
    fds = [os.open(f, os.O_RDONLY) for f in argv[2:]]
    sock = socket.create_connection((host, port), timeout=30)
    last: list[str] = []
    sent = 0.0
    while True:
        levels = [os.pread(fd, 16, 0).decode().strip() for fd in fds]
        now = time.monotonic()
        if levels != last or now - sent >= HEARTBEAT_S:
            try:
                sock.sendall(f"{now:.4f} {' '.join(levels)}\n".encode())
            except OSError:
                return 0  # the host is done
            last, sent = levels, now
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
