"""The PC/SC adapter: error translation, waiting, and recovery, against a real private pcscd."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
from smartcard import scard

from mynabox.adapters.pcsc import PcscReader, error_name, translate
from mynabox.card.errors import CardRemoved, CardUnresponsive, ReaderGone, ServiceGone
from mynabox.testing.pcscd import PrivatePcscd


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
