"""The PC/SC adapter: error translation, waiting, and recovery, against a real private pcscd."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import textwrap
import threading

import pytest
from smartcard import scard

from mynabox.adapters.pcsc import PcscCard, PcscReader, error_name, translate
from mynabox.card.errors import CardRemoved, CardUnresponsive, ReaderGone, ServiceGone
from mynabox_testkit.pcscd import PrivatePcscd


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (scard.SCARD_W_REMOVED_CARD, CardRemoved),
        (scard.SCARD_E_NO_SMARTCARD, CardRemoved),
        (scard.SCARD_W_RESET_CARD, CardRemoved),
        (scard.SCARD_E_READER_UNAVAILABLE, ReaderGone),
        (scard.SCARD_E_UNKNOWN_READER, ReaderGone),
        (scard.SCARD_E_NO_READERS_AVAILABLE, ReaderGone),
        (scard.SCARD_E_NO_SERVICE, ServiceGone),
        (scard.SCARD_E_SERVICE_STOPPED, ServiceGone),
        (scard.SCARD_F_COMM_ERROR, ServiceGone),
        (scard.SCARD_E_INVALID_HANDLE, ServiceGone),
        (scard.SCARD_W_UNRESPONSIVE_CARD, CardUnresponsive),
        (scard.SCARD_E_TIMEOUT, CardUnresponsive),
        (scard.SCARD_E_PROTO_MISMATCH, CardUnresponsive),
        (scard.SCARD_F_INTERNAL_ERROR, CardUnresponsive),
    ],
)
def test_pcsc_codes_become_typed_errors(code: int, expected: type[Exception]) -> None:
    error = translate(code, "transmit")
    assert type(error) is expected
    assert str(error) == f"transmit: {error_name(code)}"


def test_error_name_of_unknown_code_is_hex() -> None:
    assert error_name(0x12345678) == "0x12345678"


_PROBE = textwrap.dedent(
    """
    import os, sys
    from smartcard import scard
    def establish():
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        return "ok" if hr == scard.SCARD_S_SUCCESS else "no-service"
    first = sys.argv[1]
    os.environ["PCSCLITE_CSOCK_NAME"] = first
    a = establish()
    os.environ["PCSCLITE_CSOCK_NAME"] = sys.argv[2]
    b = establish()
    print(a, b)
    """
)


@pytest.mark.stack
def test_socket_name_is_read_once_per_process(pcscd: PrivatePcscd, tmp_path: object) -> None:
    """pcsc-lite caches PCSCLITE_CSOCK_NAME on first use: later changes in the process are ignored.

    Hence one process talks to one socket path; PrivatePcscd keeps that path stable per process.
    """
    real, bogus = str(pcscd.socket_path), "/nonexistent/pcscd.comm"
    run = [sys.executable, "-c", _PROBE]
    # Set after import, before the first call: honoured. Changed afterwards: ignored (still "ok").
    out = subprocess.run([*run, real, bogus], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.split() == ["ok", "ok"]
    # The other way round: the bogus path sticks, though the real one is set before the second call.
    out = subprocess.run([*run, bogus, real], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.split() == ["no-service", "no-service"]


@pytest.mark.stack
def test_readers_lists_both_vpcd_slots(pcscd: PrivatePcscd) -> None:
    with PcscReader() as reader:
        assert reader.readers() == [pcscd.reader_name(0), pcscd.reader_name(1)]
    with PcscReader(reader_filter=" 00 01") as reader:
        assert reader.readers() == [pcscd.reader_name(1)]


@pytest.mark.stack
def test_wait_without_card_returns_none(pcscd: PrivatePcscd) -> None:
    with PcscReader() as reader:
        assert reader.wait_for_card(timeout=0.3) is None


@pytest.mark.stack
def test_cancel_wakes_a_waiter_and_sticks_until_resume(pcscd: PrivatePcscd) -> None:
    with PcscReader() as reader:
        results: list[object] = []
        waiter = threading.Thread(target=lambda: results.append(reader.wait_for_card(timeout=60)))
        waiter.start()
        threading.Event().wait(0.3)
        reader.cancel()
        waiter.join(20)
        assert not waiter.is_alive()
        assert results == [None]
        assert reader.wait_for_card(timeout=60) is None  # sticky: a late shutdown request is not lost
        reader.resume()
        assert reader.wait_for_card(timeout=0.2) is None


@pytest.mark.stack
def test_no_matching_reader_is_reader_gone(pcscd: PrivatePcscd) -> None:
    with PcscReader(reader_filter="no such reader") as reader, pytest.raises(ReaderGone):
        reader.wait_for_card(timeout=0.3)


@pytest.mark.stack
def test_pcscd_without_reader_is_reader_gone(pcscd: PrivatePcscd) -> None:
    pcscd.set_vpcd(False)
    pcscd.restart()
    with PcscReader() as reader, pytest.raises(ReaderGone):
        reader.wait_for_card(timeout=0.5)


@pytest.mark.stack
def test_no_pcscd_is_service_gone_then_recovers(pcscd: PrivatePcscd) -> None:
    with PcscReader() as reader:
        assert reader.readers()
        pcscd.stop()
        with pytest.raises(ServiceGone):
            reader.wait_for_card(timeout=0.5)
        pcscd.start()
        # The same reader object re-establishes its context: no restart of ours.
        assert reader.wait_for_card(timeout=2.0) is None
        assert reader.readers() == [pcscd.reader_name(0), pcscd.reader_name(1)]


class _WireCard:
    """The card side of vpcd's protocol at its simplest: an ATR, then 9000 to every APDU.

    Only for adapter mechanics (connect, transmit, removal); the My Number Card simulator lives in
    mynabox_testkit. `drop_after=n` closes the connection instead of answering APDU n: the card
    leaves the field mid-exchange.
    """

    ATR = bytes.fromhex("3B888001000005E0B381A1007F")

    def __init__(self, port: int, drop_after: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.drop_after = drop_after
        self.apdus = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _send(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">H", len(data)) + data)

    def _serve(self) -> None:
        try:
            while True:
                (size,) = struct.unpack(">H", self._recv(2))
                message = self._recv(size)
                if size == 1:
                    if message[0] == 4:
                        self._send(self.ATR)
                    continue
                self.apdus += 1
                if self.drop_after is not None and self.apdus >= self.drop_after:
                    self.close()
                    return
                self._send(b"\x90\x00")
        except (EOFError, OSError):
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


SELECT = bytes.fromhex("00A4040C0AD392F000260100000001")


def _wait_until_empty(reader_name: str, timeout_ms: int = 10_000) -> None:
    """Wait until pcscd's event thread has registered that the card left.

    vpcd quirk (measured): after a transmit fails, pcscd marks the slot empty at once, but its event
    thread notices the removal only on its next presence poll; a new card connection made before
    that poll is taken for the old card and never announced. A person re-tapping takes far longer;
    tests wait. pcsc-lite counts every insertion and removal in the top 16 bits of the state, so an
    even count with the slot empty means the removal was registered.
    """
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        state = scard.SCARD_STATE_UNAWARE
        while not (state & scard.SCARD_STATE_EMPTY and (state >> 16) % 2 == 0):
            hresult, states = scard.SCardGetStatusChange(context, timeout_ms, [(reader_name, state)])
            assert hresult == scard.SCARD_S_SUCCESS, error_name(hresult)
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
    finally:
        scard.SCardReleaseContext(context)


@pytest.mark.stack
def test_card_is_handed_out_once_per_insertion(pcscd: PrivatePcscd) -> None:
    _wait_until_empty(pcscd.reader_name(0))
    with PcscReader() as reader:
        wire = _WireCard(pcscd.vpcd_port)
        try:
            card = reader.wait_for_card(timeout=10)
            assert card is not None
            with card:
                assert card.reader_name == pcscd.reader_name(0)
                assert card.atr == _WireCard.ATR
                assert card.transmit(SELECT) == b"\x90\x00"
            assert reader.wait_for_card(timeout=0.5) is None  # same card still there: not again
        finally:
            wire.close()
        _wait_until_empty(pcscd.reader_name(0))
        wire = _WireCard(pcscd.vpcd_port)  # taken away and presented anew: read again
        try:
            card = reader.wait_for_card(timeout=10)
            assert card is not None
            card.close()
        finally:
            wire.close()


@pytest.mark.stack
def test_card_leaving_mid_exchange_is_card_removed(pcscd: PrivatePcscd) -> None:
    _wait_until_empty(pcscd.reader_name(0))
    with PcscReader() as reader:
        wire = _WireCard(pcscd.vpcd_port, drop_after=2)
        try:
            card = reader.wait_for_card(timeout=10)
            assert card is not None
            with card:
                assert card.transmit(SELECT) == b"\x90\x00"
                with pytest.raises(CardRemoved):
                    card.transmit(SELECT)
                with pytest.raises(CardRemoved):
                    card.transmit(SELECT)
        finally:
            wire.close()
        _wait_until_empty(pcscd.reader_name(0))
        wire = _WireCard(pcscd.vpcd_port)
        try:
            card = reader.wait_for_card(timeout=10)
            assert card is not None
            with card:
                assert card.transmit(SELECT) == b"\x90\x00"
        finally:
            wire.close()


@pytest.mark.stack
def test_pcscd_killed_under_a_connected_card_then_recovered(pcscd: PrivatePcscd) -> None:
    _wait_until_empty(pcscd.reader_name(0))
    with PcscReader() as reader:
        wire = _WireCard(pcscd.vpcd_port)
        try:
            card = reader.wait_for_card(timeout=10)
            assert card is not None
            pcscd.kill()
            with pytest.raises(ServiceGone):
                card.transmit(SELECT)
            card.close()
        finally:
            wire.close()
        pcscd.start()
        wire = _WireCard(pcscd.vpcd_port)
        try:
            card = reader.wait_for_card(timeout=10)
            assert card is not None
            with card:
                assert card.transmit(SELECT) == b"\x90\x00"
        finally:
            wire.close()


@pytest.mark.stack
def test_pcscd_killed_while_waiting_then_card_read(pcscd: PrivatePcscd) -> None:
    _wait_until_empty(pcscd.reader_name(0))
    with PcscReader() as reader:
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(reader.wait_for_card(timeout=30)))
        waiter.start()
        threading.Event().wait(0.4)
        pcscd.kill()
        threading.Event().wait(0.3)
        pcscd.start()
        wire = _WireCard(pcscd.vpcd_port)
        try:
            waiter.join(30)
            card = got[0]
            assert isinstance(card, PcscCard)
            with card:
                assert card.transmit(SELECT) == b"\x90\x00"
        finally:
            wire.close()
