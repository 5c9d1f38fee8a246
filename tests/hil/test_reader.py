"""The reader and the cards: found, capabilities learned, a JPKI test card read without a PIN (the suite
never sends VERIFY), present and removed detected, a card that is not a My Number Card told apart."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from mynabox.adapters.pcsc import PcscCard, PcscReader
from mynabox.app.cardread import CapsMemory, ReadRecord, read_card
from mynabox.card.certcheck import TrustStore
from mynabox.card.errors import NotMyNumberCard
from mynabox.card.jpki import CardType
from mynabox_testkit import testca

from .bench import Bench
from .cards import Overrun, RecordingTransport, bounded, wait_removed
from .measure import Measurement
from .prompts import Operator

pytestmark = [pytest.mark.hil, pytest.mark.needs("reader")]

VERIFY = 0x20


def wait_card(bench: Bench, reader: PcscReader, operator: Operator, card: str) -> PcscCard:
    operator.tell(f"hold {card} to the reader and keep it there")
    found = bounded(
        lambda: reader.wait_for_card(operator.timeout_s), operator.timeout_s + 5, f"waiting for {card}"
    )
    if found is None:
        pytest.fail(f"no card seen on {bench.reader_filter!r} within {operator.timeout_s:g} s ({card})")
    return found


def take_away(bench: Bench, operator: Operator, reader_name: str) -> bool:
    operator.tell("remove the card from the reader")
    return wait_removed(reader_name, operator.timeout_s)


@pytest.mark.check("reader: found by pcscd")
def test_reader_found(
    bench: Bench, fact: Callable[[str, object], None], proved: Callable[[str], None]
) -> None:
    with PcscReader() as every:
        names = every.readers()
    matching = [n for n in names if bench.reader_filter is None or bench.reader_filter in n]
    fact("readers", names)
    assert matching, f"no PC/SC reader matching {bench.reader_filter!r} (pcscd sees {names or 'none'})"
    proved(f"reader: found by pcscd ({matching[0]})")


@pytest.mark.check("reader: test card read without a PIN, its removal seen")
def test_test_card_read_without_pin(
    bench: Bench,
    operator: Operator,
    measure: Callable[[str, float], Measurement],
    fact: Callable[[str, object], None],
    proved: Callable[[str], None],
) -> None:
    caps = CapsMemory()
    trust = TrustStore.jlis([testca.test_ca_pem()])
    with PcscReader(bench.reader_filter) as reader:
        card = wait_card(bench, reader, operator, bench.rig.test_card)
        fact("card present", card.reader_name)
        transport = RecordingTransport(card)
        try:
            report: ReadRecord = bounded(
                lambda: read_card(
                    transport, caps, trust=trust, hash_key=secrets.token_bytes(32), clock_synced=False
                ),
                bench.rig.read_timeout_s,  # a read takes well under a second
                "the card read",
            )
        except Overrun as err:
            take_away(bench, operator, card.reader_name)  # PC/SC then ends the stuck transmit
            pytest.fail(f"{err}: the card never answered an APDU (after {len(transport.instructions)} sent)")
        finally:
            card.close()
        assert report.jpki.card_type is CardType.MY_NUMBER_CARD, report.jpki.card_type
        assert report.jpki.certificate[:1] == b"\x30", "the certificate read is not DER"
        read = measure("card_read_ms", report.ms)
        apdus = measure("apdus_per_read", report.jpki.apdus)
        fact("extended length", report.jpki.caps.extended)
        fact("SFI reads", report.jpki.caps.sfi)
        fact("certificate bytes", len(report.jpki.certificate))
        fact("certificate check", str(report.check.status))
        assert report.jpki.caps.extended is not None and report.jpki.caps.sfi is not None, report.jpki.caps
        assert VERIFY not in transport.instructions
        log = getattr(bench, "card_log", None)
        if log is not None:
            verifies = [a.hex() for a in log() if len(a) > 1 and a[1] == VERIFY]
            assert not verifies, f"VERIFY reached the virtual card: {verifies}"
        removed = take_away(bench, operator, card.reader_name)
    assert removed, f"the card's removal was not seen within {operator.timeout_s:g} s"
    proved(
        f"reader: card read in {read.value / 1000:.2f} s ({apdus.value:g} APDUs, no PIN sent), "
        "its removal seen"
    )


@pytest.mark.check("reader: a card that is not a My Number Card told apart, its removal seen")
def test_other_card_told_apart(bench: Bench, operator: Operator) -> None:
    with PcscReader(bench.reader_filter) as reader:
        card = wait_card(bench, reader, operator, bench.rig.other_card)
        transport = RecordingTransport(card)
        try:
            with pytest.raises(NotMyNumberCard):
                bounded(
                    lambda: read_card(
                        transport,
                        CapsMemory(),
                        trust=TrustStore.jlis(),
                        hash_key=secrets.token_bytes(32),
                        clock_synced=False,
                    ),
                    bench.rig.read_timeout_s,
                    "reading the other card",
                )
        finally:
            card.close()
            removed = take_away(bench, operator, card.reader_name)
    assert VERIFY not in transport.instructions
    assert removed, f"the card's removal was not seen within {operator.timeout_s:g} s"
