"""Ports for the servers a test starts, chosen below the kernel's ephemeral range.

A port the kernel handed out with ``bind(0)`` lies in the ephemeral range, where any outgoing connection on
the machine may take it as its source port while the test's server is down (a broker stopped and started
again on its port, a cluster node not yet listening): the server then cannot bind. Below the range only
another listener can hold it, and the bind check sees that.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # below: well-known and registered services a machine may run


def _ephemeral_start() -> int:
    try:
        start = int(RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
    return start if start > LOWEST + 1000 else 32768


def port_free(port: int) -> bool:
    """Nothing listens on `port` (any address) nor holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """A port N outside the ephemeral range with N … N+count-1 all free."""
    rng = random.SystemRandom()
    top = _ephemeral_start() - count
    for _ in range(500):
        port = rng.randrange(LOWEST, top)
        if all(port_free(port + i) for i in range(count)):
            return port
    raise OSError(f"no {count} free port(s) in {LOWEST}..{top}")
