"""The card side of libcacard's VSCard protocol: puts a `VirtualMyNumberCard` into qemu's emulated USB reader.

qemu's `usb-ccid` device is a CCID reader (08e6:4433, a Gemalto id libccid knows) on the guest's USB bus; its
`ccid-card-passthru` slot forwards the card's side over a chardev in VSCard messages (libcacard's
vscard_common.h; qemu's hw/usb/ccid-card-passthru.c is the host side). So the guest's own pcscd + libccid
read the card as from a USB reader on a Pi, and no vpcd is needed in the image.

Every message is a 12-byte header, three big-endian uint32 (type, reader id, payload length), then the
payload. VSCard calls the card's side the client: it sends Init (magic "VSCD", version, capabilities) and
ReaderAdd, then ATR to insert a card and CardRemove to pull it; the host (qemu) acknowledges each with an
Error message (code 0 = success) and sends the guest's command APDUs as APDU messages, each answered with
the response APDU. Everything qemu sends is bounded (a length over MAX_PAYLOAD drops the connection) and an
unknown message is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time

from mynabox_testkit.mynacard import CardGone, VirtualMyNumberCard
from mynabox_testkit.vpcd import connect_retrying

log = logging.getLogger(__name__)

INIT, ERROR, READER_ADD, READER_REMOVE, ATR, CARD_REMOVE, APDU, FLUSH, FLUSH_COMPLETE = range(1, 10)
MAGIC = b"VSCD"  # written as bytes: qemu compares it as a native-order constant of these four letters
VERSION = 2  # VSCARD_VERSION = MAKE_VERSION(0, 0, 2)
UNDEFINED_READER = 0xFFFFFFFF
SUCCESS = 0
HEADER = struct.Struct(">III")
# qemu's own receive buffer is 64 KiB; an APDU is at most 65 544 bytes (extended Lc + data + Le).
MAX_PAYLOAD = 70_000


def encode(kind: int, reader_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, reader_id, len(payload)) + payload


def init_payload() -> bytes:
    return MAGIC + struct.pack(">II", VERSION, 0)


class VscardError(Exception):
    """The host refused a step (its Error code) or did not answer in time."""


class VscardCard:
    """Connects to qemu's passthru chardev (a socket qemu listens on), adds the reader, and inserts and
    removes the virtual card. `insert()` presents a card; `remove()` pulls it; `close()` leaves the reader
    in place (qemu keeps the USB reader; the next connection adds it again)."""

    def __init__(self, card: VirtualMyNumberCard, host: str = "127.0.0.1", port: int = 0) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.host_version: int | None = None
        self.apdus = 0
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._acks: queue.Queue[int] = queue.Queue()
        self._inited = threading.Event()
        self._inserted = False
        self._unawaited = 0  # acks of removals the card made itself (serve thread only)
        self._thread: threading.Thread | None = None

    # -- the test's side ----------------------------------------------------------------------------

    def connect(self, timeout: float = 10.0, sock: socket.socket | None = None) -> VscardCard:
        """Open the chardev (retrying until qemu listens), exchange Init and add the reader."""
        if sock is None:
            sock = connect_retrying(self.host, self.port, timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="vscard", daemon=True)
        self._thread.start()
        self._send(INIT, UNDEFINED_READER, init_payload())
        if not self._inited.wait(timeout):
            raise VscardError("the host sent no Init")
        self._send(READER_ADD, UNDEFINED_READER, b"mynabox virtual JPKI")
        self._ack(timeout, "reader add")
        return self

    def insert(self, card: VirtualMyNumberCard | None = None, timeout: float = 10.0) -> None:
        """Present a card (this one again, or another): its ATR, which the guest sees as a card inserted."""
        if self._inserted:
            self.remove(timeout)
        if card is not None:
            self.card = card
        self.card.reset()
        self._send(ATR, 0, self.card.atr)
        self._ack(timeout, "ATR")
        self._inserted = True

    def remove(self, timeout: float = 10.0) -> None:
        """Take the card out of the field."""
        self._inserted = False
        self._send(CARD_REMOVE, 0)
        self._ack(timeout, "card remove")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def __enter__(self) -> VscardCard:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire -----------------------------------------------------------------------------------

    def _send(self, kind: int, reader_id: int, payload: bytes = b"") -> None:
        sock = self._sock
        if sock is None:
            raise VscardError("not connected")
        with self._send_lock:
            sock.sendall(encode(kind, reader_id, payload))

    def _ack(self, timeout: float, what: str) -> None:
        try:
            code = self._acks.get(timeout=timeout)
        except queue.Empty:
            raise VscardError(f"{what}: no answer from the host in {timeout} s") from None
        if code != SUCCESS:
            raise VscardError(f"{what}: the host answered error {code}")

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while (message := read_message(sock)) is not None:
                self._handle(*message)

    def _handle(self, kind: int, reader_id: int, payload: bytes) -> None:
        if kind == INIT:
            if payload[:4] == MAGIC and len(payload) >= 8:
                self.host_version = struct.unpack_from(">I", payload, 4)[0]
                self._inited.set()
            else:
                log.warning("vscard: an Init without the magic, ignored")
        elif kind == ERROR and self._unawaited:
            self._unawaited -= 1
        elif kind == ERROR:
            self._acks.put(struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else -1)
        elif kind == APDU:
            self._answer(payload)
        elif kind == FLUSH:
            self._send(FLUSH_COMPLETE, reader_id)  # every APDU is answered before the next is read
        else:
            log.warning("vscard: message type %d from the host ignored", kind)

    def _answer(self, command: bytes) -> None:
        self.apdus += 1
        try:
            response = self.card.process(command)
        except CardGone:
            self._card_left()
            return
        if response is None:  # a silent card: the guest's reader waits for its own timeout
            return
        if delay := self.card.delay_for(command, response):
            time.sleep(delay)
        self._send(APDU, 0, response)
        if self.card.gone:  # answered its last APDU and left the field (Faults.remove_after)
            self._card_left()

    def _card_left(self) -> None:
        self._inserted = False
        self._unawaited += 1
        self._send(CARD_REMOVE, 0)


def read_message(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """One message (type, reader id, payload), or None at the end of the stream or an oversized length."""
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    kind, reader_id, length = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        log.warning("vscard: a %d-byte payload from the host, connection dropped", length)
        return None
    payload = _recv_exact(sock, length)
    return None if payload is None else (kind, reader_id, payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
