"""The read service over the in-memory card transport (over PC/SC: tests/integration/test_card_stack.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mynabox.adapters.pcsc import PcscReader
from mynabox.app.cardread import CapsMemory, JpkiReader, ReadRecord, read_card
from mynabox.card.certcheck import CertStatus, TrustStore
from mynabox.card.errors import CardRemoved
from mynabox.card.identity import card_key_hash
from mynabox.card.jpki import CardType, ReaderCaps
from mynabox_testkit import testca
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from support.fakecard import FakeCardTransport

CARD = "CARDREADTESTCARD0000001"
KEY = b"unit-test-key"
TRUST = TrustStore.jlis([testca.test_ca_pem()])
SHORT_READS = -(-len(testca.auth_certificate(CARD)) // 256)


@dataclass
class OnReader:
    """The in-memory card transport on a named reader, as `PcscCard` is."""

    reader_name: str
    card: VirtualMyNumberCard
    deadline: float | None = None

    def close(self) -> None:
        pass

    def transmit(self, command: bytes) -> bytes:
        return FakeCardTransport(self.card).transmit(command)


def read(memory: CapsMemory, reader: str, card: VirtualMyNumberCard) -> ReadRecord:
    return read_card(OnReader(reader, card), memory, trust=TRUST, hash_key=KEY, clock_synced=True)


def test_report_holds_the_keyed_hash_and_check_but_never_shows_the_certificate() -> None:
    report = read(CapsMemory(), "r1", VirtualMyNumberCard(CARD))
    cert = testca.auth_certificate(CARD)
    assert report.jpki.certificate == cert
    assert report.card_hash == card_key_hash(cert, KEY)
    assert report.jpki.card_type is CardType.MY_NUMBER_CARD
    assert (report.check.status, report.check.issuer_generation) == (CertStatus.OK, "test")
    assert report.jpki.apdus == 4 and report.reader == "r1" and report.ms > 0
    assert report.check.not_before is not None and report.read_at.tzinfo is not None
    assert CARD not in repr(report) and cert.hex() not in repr(report)


def test_caps_are_remembered_per_reader() -> None:
    memory = CapsMemory()
    first = read(memory, "refusing", VirtualMyNumberCard(CARD, extended=False))
    assert first.jpki.apdus == 3 + SHORT_READS
    assert memory.get("refusing").extended is False
    assert memory.get("other") == ReaderCaps()  # another reader still tries extended Le
    assert read(memory, "refusing", VirtualMyNumberCard(CARD, extended=False)).jpki.apdus == 2 + SHORT_READS
    assert (
        read(memory, "other", VirtualMyNumberCard(CARD)).jpki.apdus == 4
    )  # first tap there: no length hint yet
    assert read(memory, "other", VirtualMyNumberCard(CARD)).jpki.apdus == 3


def test_a_pulled_card_teaches_nothing() -> None:
    memory = CapsMemory(ReaderCaps(extended=True))
    with pytest.raises(CardRemoved):
        read(memory, "r1", VirtualMyNumberCard(CARD, extended=False, faults=Faults(remove_after=3)))
    assert memory.get("r1") == ReaderCaps(extended=True)


def test_default_caps_apply_until_a_read_completes() -> None:
    memory = CapsMemory(ReaderCaps(extended=False))
    card = VirtualMyNumberCard(CARD)
    assert read(memory, "r1", card).jpki.apdus == 2 + SHORT_READS  # configured: never try extended
    assert all(len(command) <= 5 + 255 for command in card.log)


def test_jpki_reader_keeps_one_memory_for_its_reads() -> None:
    service = JpkiReader(PcscReader(), trust=TRUST, hash_key=KEY)  # no PC/SC call until a wait
    on_reader = OnReader("r1", VirtualMyNumberCard(CARD, extended=False))
    assert service.read_present(on_reader, clock_synced=False).jpki.apdus == 3 + SHORT_READS
    on_reader.card = VirtualMyNumberCard(CARD, extended=False)
    again = service.read_present(on_reader, clock_synced=False)
    assert again.jpki.apdus == 2 + SHORT_READS
    assert not again.check.validity_verified  # dates mean nothing against an unsynced clock
