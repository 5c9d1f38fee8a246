"""The card path on the real stack: our reader through pcscd + vpcd + the virtual My Number Card."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.pcsc import PcscCard, PcscReader
from mynabox.card.certcheck import CertStatus, TrustStore
from mynabox.card.errors import CardRemoved, MalformedResponse, NotMyNumberCard, StatusWordError
from mynabox.card.jpki import CardRead, ReaderCaps, read_auth_certificate
from mynabox.card.session import run
from mynabox.card.transport import Transport
from mynabox.cardread import CapsMemory, read_card
from mynabox.testing import testca
from mynabox.testing.fakecard import FakeCardTransport
from mynabox.testing.mynacard import Faults, VirtualMyNumberCard
from mynabox.testing.pcscd import PrivatePcscd
from mynabox.testing.vpcd import VpcdCardServer

pytestmark = pytest.mark.stack
CARD = "STACKTESTCARD0000000001"
MYNABOX = str(Path(".venv/bin/mynabox").resolve())
TEXT_AP_SELECT = bytes.fromhex("00A4040C0AD3921000310001010408")
VISUAL_AP_SELECT = bytes.fromhex("00A4040C0AD3921000310001010402")


@pytest.fixture(scope="module")
def pcscd() -> Iterator[PrivatePcscd]:
    with PrivatePcscd() as daemon:
        daemon.use_in_process()
        yield daemon


@pytest.fixture(scope="module")
def reader(pcscd: PrivatePcscd) -> Iterator[PcscReader]:
    with PcscReader() as r:
        yield r


def present(
    pcscd: PrivatePcscd, reader: PcscReader, card: VirtualMyNumberCard
) -> tuple[VpcdCardServer, PcscCard]:
    pcscd.wait_empty()
    server = VpcdCardServer(card, port=pcscd.vpcd_port).start()
    connected = reader.wait_for_card(timeout=10)
    assert connected is not None
    return server, connected


def read_once(
    pcscd: PrivatePcscd, reader: PcscReader, card: VirtualMyNumberCard, caps: ReaderCaps
) -> CardRead:
    server, connected = present(pcscd, reader, card)
    try:
        return run(read_auth_certificate(caps), connected)
    finally:
        connected.close()
        server.remove()


# -- the contract every transport passes (the in-memory fake and the real PC/SC stack) -------------------


@pytest.fixture(params=["fake", "pcsc"])
def transport_for(
    request: pytest.FixtureRequest, pcscd: PrivatePcscd, reader: PcscReader
) -> Iterator[object]:
    opened: list[tuple[VpcdCardServer, PcscCard]] = []

    def make(card: VirtualMyNumberCard) -> Transport:
        if request.param == "fake":
            return FakeCardTransport(card)
        server, connected = present(pcscd, reader, card)
        opened.append((server, connected))
        return connected

    yield make
    for server, connected in opened:
        connected.close()
        server.remove()


@pytest.mark.parametrize("extended", [True, False])
def test_contract_reads_the_certificate(transport_for: object, extended: bool) -> None:
    card = VirtualMyNumberCard(CARD, extended=extended)
    result = run(read_auth_certificate(), transport_for(card))  # type: ignore[operator]
    assert result.certificate == testca.auth_certificate(CARD)
    assert result.caps.extended is extended
    # SELECT + token + one extended read; or SELECT + token + the refused try + ceil(len/256) short reads.
    expected = 3 if extended else 3 + -(-len(result.certificate) // 256)
    assert result.apdus == card.apdu_count == expected


def test_contract_not_a_my_number_card(transport_for: object) -> None:
    with pytest.raises(NotMyNumberCard):
        run(read_auth_certificate(), transport_for(VirtualMyNumberCard(CARD, faults=Faults(non_jpki=True))))  # type: ignore[operator]


def test_contract_card_leaving_is_card_removed(transport_for: object) -> None:
    with pytest.raises(CardRemoved):
        run(read_auth_certificate(), transport_for(VirtualMyNumberCard(CARD, faults=Faults(remove_after=2))))  # type: ignore[operator]


# -- the real stack only -------------------------------------------------------------------------------


def test_remembered_caps_skip_the_refused_extended_try(pcscd: PrivatePcscd, reader: PcscReader) -> None:
    memory = CapsMemory()
    trust = TrustStore.jlis([testca.test_ca_pem()])
    first_card = VirtualMyNumberCard(CARD, extended=False)
    server, connected = present(pcscd, reader, first_card)
    try:
        first = read_card(connected, memory, trust=trust, hash_key=b"k", clock_synced=True)
    finally:
        connected.close()
        server.remove()
    second_card = VirtualMyNumberCard(CARD, extended=False)
    server, connected = present(pcscd, reader, second_card)
    try:
        second = read_card(connected, memory, trust=trust, hash_key=b"k", clock_synced=True)
    finally:
        connected.close()
        server.remove()
    length = len(testca.auth_certificate(CARD))
    assert first.read.apdus == 3 + -(-length // 256)
    assert second.read.apdus == 2 + -(-length // 256)  # the goal: 2 + ceil(len/256)
    assert first.check.status is CertStatus.OK and first.card_hash == second.card_hash


def test_pull_at_every_apdu_boundary(pcscd: PrivatePcscd, reader: PcscReader) -> None:
    full = read_once(pcscd, reader, VirtualMyNumberCard(CARD, extended=False), ReaderCaps(extended=False))
    for n in range(1, full.apdus):
        card = VirtualMyNumberCard(CARD, extended=False, faults=Faults(remove_after=n))
        with pytest.raises(CardRemoved):
            read_once(pcscd, reader, card, ReaderCaps(extended=False))
    # The next tap of a good card reads fine.
    result = read_once(pcscd, reader, VirtualMyNumberCard(CARD), ReaderCaps())
    assert result.certificate == testca.auth_certificate(CARD)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(lying_der_length=0x1400), MalformedResponse),
        (Faults(oversize=4), MalformedResponse),
        (Faults(wrong_sw=(0xB0, 0x6982)), StatusWordError),
    ],
)
def test_hostile_cards_give_typed_errors(
    pcscd: PrivatePcscd, reader: PcscReader, faults: Faults, error: type[Exception]
) -> None:
    with pytest.raises(error):
        read_once(
            pcscd,
            reader,
            VirtualMyNumberCard(CARD, extended=False, faults=faults),
            ReaderCaps(extended=False),
        )


def test_the_box_never_verifies_nor_touches_the_text_or_visual_aps(
    pcscd: PrivatePcscd, reader: PcscReader
) -> None:
    card = VirtualMyNumberCard(CARD)
    read_once(pcscd, reader, card, ReaderCaps())
    assert all(apdu[1] != 0x20 for apdu in card.log)  # no VERIFY
    assert TEXT_AP_SELECT not in card.log and VISUAL_AP_SELECT not in card.log


def test_pcscd_restarted_while_waiting(pcscd: PrivatePcscd, reader: PcscReader) -> None:
    pcscd.restart(kill=True)
    result = read_once(pcscd, reader, VirtualMyNumberCard(CARD), ReaderCaps())
    assert result.apdus == 3


def test_reader_unplugged_and_back(pcscd: PrivatePcscd, reader: PcscReader) -> None:
    from mynabox.card.errors import ReaderGone

    pcscd.set_vpcd(False)  # pcscd restarted without the vpcd reader: the reader is gone
    pcscd.restart()
    with pytest.raises(ReaderGone):
        reader.wait_for_card(timeout=1.0)
    pcscd.set_vpcd(True)
    pcscd.restart()  # plugged back in: the same reader object (no process restart) reads again
    result = read_once(pcscd, reader, VirtualMyNumberCard(CARD), ReaderCaps())
    assert result.certificate == testca.auth_certificate(CARD)


@pytest.mark.parametrize(
    ("faults", "code", "outcome"), [(Faults(), 0, "ok"), (Faults(non_jpki=True), 3, "not-my-number-card")]
)
def test_read_command_as_a_subprocess(pcscd: PrivatePcscd, faults: Faults, code: int, outcome: str) -> None:
    pcscd.wait_empty()
    with VpcdCardServer(VirtualMyNumberCard(CARD, faults=faults), port=pcscd.vpcd_port):
        env = dict(os.environ, **pcscd.env)
        out = subprocess.run(
            [MYNABOX, "read", "--json", "--test-ca", "--timeout", "10"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert out.returncode == code, out.stderr
    report = json.loads(out.stdout)
    assert report["outcome"] == outcome
    if code == 0:
        assert report["apdus"] == 3 and report["certificate_status"] == "ok"
        assert report["certificate_issuer_generation"] == "test"
        assert CARD not in out.stdout  # the CN never leaves; only the keyed hash
