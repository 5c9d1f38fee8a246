"""The link emulator against a real echo server on loopback: delays, the handshake's round trip, order and
integrity under jitter, bandwidth, stalls, the black hole, resets, half-close and stop.

Bounds are one-sided where the emulator promises a minimum (it may be late on a loaded machine, never
early) and generous on the other side.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from support.linkemu import Direction, LinkEmulator


class Echo:
    """Echoes every byte back on each connection until the client closes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.first_byte_at: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._echo, args=(conn,))
            t.start()
            self._threads.append(t)

    def _echo(self, conn: socket.socket) -> None:
        first = True
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(65536):
                if first:
                    self.first_byte_at.append(time.monotonic())
                    first = False
                conn.sendall(data)

    def stop(self) -> None:
        self._stop.set()
        self._accept.join(5)
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)
        self._listener.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.stop()


def connect(link: LinkEmulator) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", link.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "closed early"
        data += chunk
    return data


def round_trip(s: socket.socket, payload: bytes = b"x") -> float:
    started = time.monotonic()
    s.sendall(payload)
    assert recv_exactly(s, len(payload)) == payload
    return time.monotonic() - started


def test_a_round_trip_takes_the_rtt_and_the_first_bytes_wait_for_the_handshake(echo: Echo) -> None:
    with LinkEmulator(("127.0.0.1", echo.port), rtt_s=0.2) as link:
        opened = time.monotonic()
        s = connect(link)
        with s:
            round_trip(s)
            first = time.monotonic() - opened  # from the connect: handshake + one round trip
            later = [round_trip(s) for _ in range(3)]
        assert echo.first_byte_at[0] - opened >= 0.2 + 0.1  # the handshake's round trip, then the way up
        assert 0.4 <= first < 0.4 + 0.3
        assert all(0.2 <= t < 0.2 + 0.2 for t in later), later
        assert link.connections == 1


def test_delay_per_direction(echo: Echo) -> None:
    with LinkEmulator(("127.0.0.1", echo.port), up=Direction(0.05), down=Direction(0.25)) as link:
        assert link.rtt_s == pytest.approx(0.3)
        opened = time.monotonic()
        with connect(link) as s:
            took = round_trip(s)
        up = echo.first_byte_at[0] - opened
    assert 0.3 + 0.05 <= up < 0.3 + 0.05 + 0.15  # the handshake's round trip, then the short way up
    assert took >= 0.3 + 0.3  # handshake, up 0.05 and the long way down 0.25


def test_jitter_keeps_order_and_every_byte(echo: Echo) -> None:
    payload = os.urandom(300_000)
    with (
        LinkEmulator(("127.0.0.1", echo.port), rtt_s=0.02, jitter_s=0.03, seed=7) as link,
        connect(link) as s,
    ):
        reader = threading.Thread(target=lambda: got.append(recv_exactly(s, len(payload))))
        got: list[bytes] = []
        reader.start()
        for i in range(0, len(payload), 1000):  # many small writes: many chunks with their own jitter
            s.sendall(payload[i : i + 1000])
        reader.join(30)
    assert got == [payload]


def test_bandwidth_limits_throughput(echo: Echo) -> None:
    size = 50_000
    slow = Direction(0.0, bandwidth_bps=1_000_000)  # 1 Mbit/s: 50 kB take 0.4 s each way
    with LinkEmulator(("127.0.0.1", echo.port), up=slow, down=Direction(0.0)) as link, connect(link) as s:
        took = round_trip(s, os.urandom(size))
    assert took >= size * 8 / 1_000_000 * 0.95
    assert took < 5.0


def test_a_stall_holds_bytes_then_releases_them_in_order(echo: Echo) -> None:
    with LinkEmulator(("127.0.0.1", echo.port), rtt_s=0.02) as link, connect(link) as s:
        round_trip(s)
        link.stall(1.0)
        started = time.monotonic()
        s.sendall(b"abc")
        s.settimeout(0.6)
        with pytest.raises(TimeoutError):
            s.recv(3)  # nothing crosses during the stall
        s.settimeout(5)
        assert recv_exactly(s, 3) == b"abc"
        assert time.monotonic() - started >= 1.0
        assert round_trip(s) < 0.5  # the link is back


def test_a_black_hole_holds_everything_until_restored(echo: Echo) -> None:
    with LinkEmulator(("127.0.0.1", echo.port)) as link, connect(link) as s:
        round_trip(s)
        link.black_hole()
        s.sendall(b"lost?")
        s.settimeout(1.5)
        with pytest.raises(TimeoutError):
            s.recv(5)
        late = connect(link)  # a new connection gets through the kernel, its bytes do not
        late.sendall(b"z")
        late.settimeout(0.3)
        with pytest.raises(TimeoutError):
            late.recv(1)
        link.restore()
        s.settimeout(5)
        late.settimeout(5)
        assert recv_exactly(s, 5) == b"lost?"
        assert recv_exactly(late, 1) == b"z"
        late.close()


def test_cut_resets_every_connection(echo: Echo) -> None:
    with LinkEmulator(("127.0.0.1", echo.port)) as link, connect(link) as s:
        round_trip(s)
        link.cut()
        s.settimeout(5)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            s.sendall(b"x")
            s.recv(1)
            s.sendall(b"x")  # the first write may still be accepted before the reset arrives
            s.recv(1)


def test_a_close_passes_through_and_stop_ends_every_connection(echo: Echo) -> None:
    link = LinkEmulator(("127.0.0.1", echo.port), rtt_s=0.02)
    a, b = connect(link), connect(link)
    round_trip(a)
    round_trip(b)
    a.shutdown(socket.SHUT_WR)  # the echo sees EOF through the link and closes its side
    a.settimeout(5)
    assert a.recv(1) == b""
    link.stop()
    b.settimeout(5)
    assert b.recv(1) == b""  # stopped: the connection ended, nothing left running
    assert not [t for t in threading.enumerate() if t.name.startswith("linkemu")]
    a.close()
    b.close()
