"""A mobile link on loopback: a userspace TCP proxy with delay per direction, jitter, bandwidth, stalls and a
black hole, for tests and benchmarks of the box's two network links (summary service, broker).

This kernel has no netem (and a test may not change the host's qdiscs), and no well-kept userspace tool in
Debian or PyPI does this (toxiproxy is neither), so: every accepted connection gets a connection to the
target and two pumps; each chunk read is released to the other side at

    max(previous release, arrival + one-way delay + jitter) + its size / bandwidth

so bytes keep their order (TCP does) and a slow link queues them. A new connection's first bytes toward
the target wait one round trip after the accept: the client's TCP handshake completes at once on loopback,
on the real link it costs that round trip. `stall(s)` holds every byte (both directions, queued ones too)
for `s` seconds and then releases them, as TCP's retransmissions deliver them once a tunnel ends;
`black_hole()` holds them until `restore()`; new connections during either wait like any other byte.

    with LinkEmulator(("127.0.0.1", port), rtt_s=0.1) as link:
        connect to ("127.0.0.1", link.port)

Loopback only: it listens on 127.0.0.1 and connects only to the target it is given.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

CHUNK = 16384


@dataclass(frozen=True)
class Direction:
    """One direction of the link: one-way delay, jitter (uniform 0..jitter_s added per chunk), bandwidth."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bps: float | None = None  # bits per second; None: unlimited


class _Pump:
    """Bytes from `src` to `dst`, each chunk released at its time (see the module's docstring)."""

    def __init__(
        self, link: LinkEmulator, src: socket.socket, dst: socket.socket, way: Direction, *, up: bool
    ) -> None:
        self._link, self._src, self._dst, self._way, self._up = link, src, dst, way, up
        self._queue: deque[tuple[float, bytes]] = deque()
        self._cond = threading.Condition()
        self._eof = False
        self._last = 0.0
        self._opened = time.monotonic()
        self.threads = [
            threading.Thread(target=self._read, name="linkemu-read", daemon=True),
            threading.Thread(target=self._write, name="linkemu-write", daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read(self) -> None:
        try:
            while True:
                data = self._src.recv(CHUNK)
                if not data:
                    break
                now = time.monotonic()
                if self._up:  # the client's data cannot cross before its TCP handshake would have
                    now = max(now, self._opened + self._link.rtt_s)
                way = self._way
                release = (
                    now + way.delay_s + (self._link.random.uniform(0, way.jitter_s) if way.jitter_s else 0)
                )
                release = max(release, self._last)
                if way.bandwidth_bps:
                    release += len(data) * 8 / way.bandwidth_bps
                self._last = release
                with self._cond:
                    self._queue.append((release, data))
                    self._cond.notify()
        except OSError:
            pass
        with self._cond:
            self._eof = True
            self._cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._eof:
                        self._cond.wait()
                    if not self._queue:
                        break
                    release, data = self._queue[0]
                wait = max(release - time.monotonic(), self._link.held_for())
                if self._link.stopping:
                    break
                if wait > 0:
                    self._link.wait(wait)
                    continue  # look again: a stall may have begun or ended meanwhile
                with self._cond:
                    self._queue.popleft()
                self._dst.sendall(data)
            with contextlib.suppress(OSError):
                self._dst.shutdown(socket.SHUT_WR)  # the sender closed: pass the FIN on
        except OSError:
            self._link.drop(self._src, self._dst)


class LinkEmulator:
    """A proxy on 127.0.0.1 (`port`) to `target` that behaves like the mobile link described."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        rtt_s: float = 0.0,
        jitter_s: float = 0.0,
        up: Direction | None = None,
        down: Direction | None = None,
        seed: int = 1,
    ) -> None:
        """`rtt_s` splits into two equal one-way delays, `jitter_s` applies to both, unless `up` (toward the
        target) or `down` say otherwise."""
        self.target = target
        self.up = up or Direction(rtt_s / 2, jitter_s)
        self.down = down or Direction(rtt_s / 2, jitter_s)
        self.rtt_s = self.up.delay_s + self.down.delay_s
        self.random = random.Random(seed)
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._held_until = 0.0  # inf: black hole
        self._changed = threading.Condition()
        self._sockets: set[socket.socket] = set()
        self._pumps: list[_Pump] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accept = threading.Thread(target=self._serve, name="linkemu-accept", daemon=True)
        self._accept.start()

    # -- faults -------------------------------------------------------------------------------------

    def stall(self, seconds: float) -> None:
        """Hold every byte for `seconds` from now, then release them in order."""
        with self._changed:
            self._held_until = max(self._held_until, time.monotonic() + seconds)
            self._changed.notify_all()

    def black_hole(self) -> None:
        """Hold every byte until `restore()`."""
        with self._changed:
            self._held_until = float("inf")
            self._changed.notify_all()

    def restore(self) -> None:
        """End a stall or black hole now: held bytes go on their way."""
        with self._changed:
            self._held_until = 0.0
            self._changed.notify_all()

    def cut(self) -> None:
        """Reset every connection (a NAT that forgot them, a base station handover gone wrong)."""
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
                s.shutdown(socket.SHUT_RD)  # wakes our pump reading it
            s.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def held_for(self) -> float:
        return self._held_until - time.monotonic()

    def wait(self, seconds: float) -> None:
        """Sleep `seconds` or until a fault starts or ends (or the link stops)."""
        with self._changed:
            if not self._stopping.is_set():
                self._changed.wait(min(seconds, 1.0))

    # -- plumbing -----------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    server.close()
                    return
                self.connections += 1
                self._sockets |= {client, server}
                self._pumps.append(_Pump(self, client, server, self.up, up=True))
                self._pumps.append(_Pump(self, server, client, self.down, up=False))

    def drop(self, *sockets: socket.socket) -> None:
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._accept.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets, pumps = list(self._sockets), list(self._pumps)
        self.drop(*sockets)
        for s in sockets:
            s.close()
        for pump in pumps:
            for t in pump.threads:
                t.join(timeout=5)

    def __enter__(self) -> LinkEmulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
