"""The card side of vsmartcard's vpcd protocol: puts a `VirtualMyNumberCard` into the real pcscd.

vpcd (the reader driver inside pcscd) listens on TCP; a card "enters the field" by connecting and leaves by
closing the connection. Every message either way is a 2-byte big-endian length and the bytes; one-byte
messages from the reader are control codes (0 power off, 1 power on, 2 reset, 4 send the ATR), longer ones
are command APDUs answered with the response APDU.

Latency trap (test-stack.md): vpcd writes the length and the body separately, so a plain socket pays
Nagle + delayed ACK (~44 ms) per APDU. TCP_NODELAY, and TCP_QUICKACK re-armed before each recv (Linux
clears it), bring that to ~0.05 ms, so timings measure the code and the card's latency model.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time

from mynabox_testkit.mynacard import CardGone, VirtualMyNumberCard

log = logging.getLogger(__name__)

CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4
# pcscd polls vpcd for presence every 400 ms; a card presented again before the removal was polled is taken
# for the old card and never announced. A person's re-tap takes far longer; the harness waits this long.
REINSERT_GAP_S = 1.0
CONNECT_RETRY_S = 0.1


def connect_retrying(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to a reader's card port (vpcd's, qemu's chardev), retried until it listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((host, port), timeout=1.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(CONNECT_RETRY_S)


class VpcdCardServer:
    """Serves one virtual card to a vpcd slot. `start()` presents it; `remove()` pulls it."""

    def __init__(self, card: VirtualMyNumberCard, host: str = "127.0.0.1", port: int = 35963) -> None:
        self.card = card
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._removed_at = 0.0

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._sock is not None

    def start(self, timeout: float = 10.0) -> VpcdCardServer:
        """Connect (retrying until vpcd listens) and serve in a background thread."""
        gap = self._removed_at + REINSERT_GAP_S - time.monotonic()
        if gap > 0:
            time.sleep(gap)
        sock = connect_retrying(self.host, self.port, timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._stop.clear()
        with self._lock:
            self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="vpcd-card", daemon=True)
        self._thread.start()
        return self

    def insert(self, card: VirtualMyNumberCard | None = None, timeout: float = 10.0) -> None:
        """Present a card (this one again, or another) after pulling whatever is there."""
        self.remove()
        if card is not None:
            self.card = card
        self.start(timeout)

    def remove(self) -> None:
        """Take the card out of the field: close the connection."""
        self._stop.set()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            self._removed_at = time.monotonic()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    stop = remove

    def __enter__(self) -> VpcdCardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- the wire -----------------------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                message = _recv_message(sock)
                if message is None:
                    return
                if len(message) == 1:
                    self._control(sock, message[0])
                    continue
                try:
                    response = self.card.process(message)
                except CardGone:
                    self._pull_from_worker(sock)
                    return
                if response is None:  # silent (Faults.silent_after): the reader waits for an answer forever
                    continue
                delay = self.card.delay_for(message, response)
                if delay:
                    time.sleep(delay)
                _send_message(sock, response)
                if self.card.gone:
                    # The card answered its last APDU and left the field (Faults.remove_after).
                    self._pull_from_worker(sock)
                    return
        except OSError:
            return

    def _control(self, sock: socket.socket, code: int) -> None:
        if code in (CTRL_POWER_ON, CTRL_RESET):
            self.card.reset()
        elif code == CTRL_ATR:
            # A mute card gives no ATR: pcscd cannot power it up and reports it unresponsive.
            _send_message(sock, b"" if self.card.faults.mute else self.card.atr)

    def _pull_from_worker(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
        self._removed_at = time.monotonic()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _recv_message(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, 2)
    if header is None:
        return None
    (size,) = struct.unpack(">H", header)
    return _recv_exact(sock, size)


def _send_message(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)
