"""The card path on the real stack: the read service and `mynabox read` through pcscd + vpcd + the virtual
My Number Card. (The transport contract itself, pulls and hostile cards included, runs over PC/SC in
tests/adapters/test_contract_reader.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mynabox.adapters.pcsc import PcscReader, stuck_exchanges
from mynabox.app.cardread import JpkiReader, ReadRecord
from mynabox.card.certcheck import CertStatus, TrustStore
from mynabox.card.errors import CardRemoved, NotMyNumberCard, ReaderGone, ReadTimeout
from mynabox.card.identity import card_key_hash
from mynabox.card.jpki import CardType
from mynabox_testkit import testca
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.pcscd import PrivatePcscd
from mynabox_testkit.vpcd import VpcdCardServer
from support.daemon import MYNABOX
from support.wait import wait_for

pytestmark = pytest.mark.stack
CARD = "STACKTESTCARD0000000001"
KEY = b"stack-test-hash-key"
SHORT_READS = -(-len(testca.auth_certificate(CARD)) // 256)


@pytest.fixture(scope="module")
def pcscd() -> Iterator[PrivatePcscd]:
    with PrivatePcscd() as daemon:
        daemon.use_in_process()
        yield daemon


@pytest.fixture
def service(pcscd: PrivatePcscd) -> Iterator[JpkiReader]:
    if not pcscd.vpcd or not pcscd.running():
        pcscd.set_vpcd(True)
        pcscd.restart()
    with PcscReader() as pcsc:
        yield JpkiReader(pcsc, trust=TrustStore.jlis([testca.test_ca_pem()]), hash_key=KEY)


@contextmanager
def tapped(pcscd: PrivatePcscd, card: VirtualMyNumberCard) -> Iterator[VpcdCardServer]:
    """The card held on the reader for the block; pcscd has seen the previous card leave first."""
    pcscd.wait_empty()
    server = VpcdCardServer(card, port=pcscd.vpcd_port).start()
    try:
        yield server
    finally:
        server.remove()


def tap_and_read(pcscd: PrivatePcscd, service: JpkiReader, card: VirtualMyNumberCard) -> ReadRecord:
    with tapped(pcscd, card):
        report = service.read(timeout=10, clock_synced=True)
    if report is None:
        raise TimeoutError("the card was not announced")
    return report


def test_le_modes_and_remembered_caps(pcscd: PrivatePcscd, service: JpkiReader) -> None:
    extended = tap_and_read(pcscd, service, VirtualMyNumberCard(CARD))
    assert (extended.jpki.apdus, extended.jpki.caps.extended) == (
        4,
        True,
    )  # the first tap: 256 bytes, then the rest
    assert extended.jpki.card_type is CardType.MY_NUMBER_CARD
    assert extended.check.status is CertStatus.OK and extended.check.issuer_generation == "test"
    assert extended.card_hash == card_key_hash(testca.auth_certificate(CARD), KEY)
    # A card (or reader) refusing extended Le: one refused try, then short reads...
    fallback = tap_and_read(pcscd, service, VirtualMyNumberCard(CARD, extended=False))
    assert (fallback.jpki.apdus, fallback.jpki.caps.extended) == (3 + SHORT_READS, False)
    # ...and the next tap on this reader goes straight to short reads: 2 + ceil(len/256).
    again = VirtualMyNumberCard(CARD, extended=False)
    remembered = tap_and_read(pcscd, service, again)
    assert remembered.jpki.apdus == again.apdu_count == 2 + SHORT_READS
    assert {extended.card_hash, fallback.card_hash, remembered.card_hash} == {extended.card_hash}


def test_pulled_cards_then_a_good_tap(pcscd: PrivatePcscd, service: JpkiReader) -> None:
    for answered in (1, 2):
        with pytest.raises(CardRemoved):
            tap_and_read(pcscd, service, VirtualMyNumberCard(CARD, faults=Faults(remove_after=answered)))
    assert tap_and_read(pcscd, service, VirtualMyNumberCard(CARD)).jpki.apdus == 4


def test_non_jpki_and_mute_cards(pcscd: PrivatePcscd, service: JpkiReader) -> None:
    with pytest.raises(NotMyNumberCard):
        tap_and_read(pcscd, service, VirtualMyNumberCard(CARD, faults=Faults(non_jpki=True)))
    # A card without an ATR is never announced by pcscd: the wait ends in its timeout.
    with tapped(pcscd, VirtualMyNumberCard(CARD, faults=Faults(mute=True))):
        assert service.read(timeout=2, clock_synced=True) is None


def test_pcscd_killed_and_restarted_while_waiting(pcscd: PrivatePcscd, service: JpkiReader) -> None:
    pcscd.wait_empty()
    outcome: list[ReadRecord | BaseException | None] = []

    def wait_and_read() -> None:
        try:
            outcome.append(service.read(timeout=30, clock_synced=True))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    waiter = threading.Thread(target=wait_and_read)
    waiter.start()
    try:
        time.sleep(0.5)  # the waiter is blocked in SCardGetStatusChange
        pcscd.kill()
        time.sleep(0.5)  # it now sees no service and keeps retrying
        pcscd.start()
        with tapped(pcscd, VirtualMyNumberCard(CARD)):
            waiter.join(timeout=20)
    finally:
        service.pcsc.cancel()
        waiter.join(timeout=5)
        service.pcsc.resume()
    (report,) = outcome
    assert isinstance(report, ReadRecord) and report.jpki.apdus == 4


def test_reader_unplugged_and_back(pcscd: PrivatePcscd, service: JpkiReader) -> None:
    pcscd.set_vpcd(False)  # pcscd restarted without the vpcd reader: the reader is gone
    pcscd.restart()
    with pytest.raises(ReaderGone):
        service.read(timeout=1.0, clock_synced=True)
    pcscd.set_vpcd(True)
    pcscd.restart()  # plugged back in: the same service object (no process restart) reads again
    assert tap_and_read(pcscd, service, VirtualMyNumberCard(CARD)).check.status is CertStatus.OK


def mynabox_read(pcscd: PrivatePcscd, *args: str) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        [MYNABOX, "read", "--json", "--test-ca", *args],
        env=dict(os.environ, **pcscd.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert CARD not in out.stdout + out.stderr  # the CN never leaves; only the keyed hash
    return out.returncode, json.loads(out.stdout)


def test_read_command_ok_with_key_file(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    with tapped(pcscd, VirtualMyNumberCard(CARD)):
        code, report = mynabox_read(pcscd, "--timeout", "10", "--key-file", str(key_file))
    assert code == 0, report
    assert report["outcome"] == "ok" and report["card_type"] == "my-number-card"
    assert report["card_hash"] == card_key_hash(testca.auth_certificate(CARD), KEY)
    assert (report["apdus"], report["extended_le"], report["sfi_read"]) == (4, True, True)
    assert report["certificate_status"] == "ok" and report["certificate_issuer_generation"] == "test"
    assert {"certificate_not_before", "certificate_not_after", "certificate_clock_synced", "ms"} <= set(
        report
    )


@pytest.mark.parametrize(
    ("args", "faults", "code", "outcome"),
    [
        (("--timeout", "10"), Faults(non_jpki=True), 3, "not-my-number-card"),
        (("--timeout", "1"), None, 6, "timeout"),
        (("--timeout", "1", "--reader", "no such reader"), None, 5, "no-reader"),
        (("--key-file", "/nonexistent/key"), None, 2, "bad-key-file"),
    ],
    ids=["non-jpki", "no-card", "no-reader", "bad-key-file"],
)
def test_read_command_failures(
    pcscd: PrivatePcscd, args: tuple[str, ...], faults: Faults | None, code: int, outcome: str
) -> None:
    if faults is None:
        pcscd.wait_empty()
        got = mynabox_read(pcscd, *args)
    else:
        with tapped(pcscd, VirtualMyNumberCard(CARD, faults=faults)):
            got = mynabox_read(pcscd, *args)
    assert got[0] == code and got[1]["outcome"] == outcome and got[1]["exit_code"] == code


@pytest.mark.parametrize("answered", [0, 2], ids=["silent-after-atr", "silent-mid-read"])
def test_read_command_ends_on_a_card_that_stops_answering(pcscd: PrivatePcscd, answered: int) -> None:
    """vpcd never times out an APDU: before the read had a deadline this waited forever (killed at 60 s)."""
    with tapped(pcscd, VirtualMyNumberCard(CARD, faults=Faults(silent_after=answered))):
        started = time.monotonic()
        code, report = mynabox_read(pcscd, "--timeout", "5")
        took = time.monotonic() - started
    assert (code, report["outcome"], report["exit_code"]) == (8, "card-unresponsive", 8), report
    assert "take it away and hold it again" in str(report["message"])
    assert 4.5 <= took < 8.0, took


def test_a_silent_card_then_the_next_good_card_in_one_service(
    pcscd: PrivatePcscd, service: JpkiReader
) -> None:
    """The stuck exchange is left on its own PC/SC context: the same service reads the next card."""
    with tapped(pcscd, VirtualMyNumberCard(CARD, faults=Faults(silent_after=0))):
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            service.read(timeout=10, clock_synced=True, limit_s=1.5)
        assert time.monotonic() - started < 4.0
    # Pulled: vpcd's driver gets its socket closed, the abandoned exchange returns and cleans up.
    report = tap_and_read(pcscd, service, VirtualMyNumberCard(CARD))
    assert report.jpki.certificate == testca.auth_certificate(CARD)
    assert wait_for(lambda: stuck_exchanges() == 0, 5)


def test_closing_the_reader_during_a_silent_read_does_not_block(pcscd: PrivatePcscd) -> None:
    """A stop while a read waits for its deadline: releasing the card context would wait for the blocked
    transmit (and hold pcsc-lite's global lock meanwhile), so the line is handed to its thread instead."""
    outcome: list[BaseException | ReadRecord | None] = []
    with tapped(pcscd, VirtualMyNumberCard(CARD, faults=Faults(silent_after=0))):
        pcsc = PcscReader()
        service = JpkiReader(pcsc, trust=TrustStore.jlis([testca.test_ca_pem()]), hash_key=KEY)

        def read() -> None:
            try:
                outcome.append(service.read(timeout=10, clock_synced=True, limit_s=4.0))
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        reading = threading.Thread(target=read, daemon=True)
        reading.start()
        time.sleep(1.5)  # announced, connected, SELECT sent and not answered
        closing = threading.Thread(target=pcsc.close, daemon=True)
        closing.start()
        closing.join(timeout=2.0)
        assert not closing.is_alive(), "close() blocked behind the unanswered transmit"
        reading.join(timeout=6.0)
        assert len(outcome) == 1 and isinstance(outcome[0], ReadTimeout)
    assert wait_for(lambda: stuck_exchanges() == 0, 5)
