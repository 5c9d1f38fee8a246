"""The service's addresses with a deadline, and the TCP connect to the first that answers.

glibc's resolver knows nothing of socket timeouts (5 s × 2 tries × each name server by default), so the
host name is resolved in a helper thread that the caller stops waiting for. The addresses are cached for
`ttl_s`; when a fresh answer does not come (a tunnel swallows DNS too), the last one is used rather than none.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

Address = tuple[socket.AddressFamily, tuple[Any, ...]]  # family, sockaddr (an IPv6 one keeps its scope)


class NameLookupTimeout(TimeoutError):
    """The resolver did not answer within the time the lookup had left."""


def resolve(host: str, port: int, timeout: float) -> list[Address]:
    """The host's addresses, or NameLookupTimeout / OSError. The helper thread may outlive the wait: it
    ends when the resolver gives up, and holds nothing but the host name."""
    answer: list[list[Address] | OSError] = []
    done = threading.Event()

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answer.append([(family, tuple(sockaddr)) for family, _, _, _, sockaddr in infos])
        except OSError as exc:
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="summary-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise NameLookupTimeout(host)
    if isinstance(answer[0], OSError):
        raise answer[0]
    return answer[0]


class Addresses:
    """The service's addresses, resolved with a deadline and reused for `ttl_s`."""

    def __init__(self, host: str, port: int, ttl_s: float) -> None:
        self._host, self._port, self._ttl_s = host, port, ttl_s
        self._cached: list[Address] = []
        self._at = float("-inf")
        self._lock = threading.Lock()

    def get(self, timeout: float) -> list[Address]:
        with self._lock:
            if self._cached and time.monotonic() - self._at < self._ttl_s:
                return self._cached
        try:
            addresses = resolve(self._host, self._port, timeout)
        except OSError:
            with self._lock:
                if self._cached:
                    return self._cached
            raise
        with self._lock:
            self._cached, self._at = addresses, time.monotonic()
        return addresses


def connect_any(
    addresses: list[Address], timeout: float, make: Callable[[socket.AddressFamily], socket.socket]
) -> socket.socket:
    """The first of the resolved addresses that answers, on a socket from `make(family)`."""
    error: OSError = OSError("the name has no address")
    for family, sockaddr in addresses:
        sock = make(family)
        try:
            sock.settimeout(timeout)
            # Headers and body go out in two writes: without NODELAY, Nagle waits for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error
