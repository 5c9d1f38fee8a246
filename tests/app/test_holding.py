"""The one holding of read records: kept by the card worker, taken by the delivery, forgotten by the loop.

Both workers and the loop share it (tests/app/test_delivery.py runs it between the two real workers); these
tests pin down its rules, including under threads racing for the same read.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from mynabox.app.cardread import ReadRecord
from mynabox.app.holding import MAX_HELD, Holding
from mynabox.card.certcheck import TrustStore, check_certificate
from mynabox.card.identity import card_key_hash
from mynabox_testkit import testca
from support.reads import read_record

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
TRUST = TrustStore.jlis([testca.test_ca_pem()])


def record(card_id: str) -> ReadRecord:
    der = testca.auth_certificate(card_id)
    return read_record(
        der, card_key_hash(der, b"k"), check_certificate(der, TRUST, now=NOW, clock_synced=True), NOW
    )


def test_a_record_is_taken_once_and_a_take_after_forget_gets_nothing() -> None:
    holding = Holding()
    first, second = record("HOLDINGTESTCARD00000001"), record("HOLDINGTESTCARD00000002")
    holding.keep(1, first)
    holding.keep(2, second)
    holding.forget(1)  # the loop cleared the first patient's screen
    assert holding.take(1, first.card_hash) is None  # forgotten: the delivery gets nothing
    assert holding.held == 1
    assert holding.take(2, second.card_hash) is second
    assert holding.take(2, second.card_hash) is None  # handed over once
    holding.forget(2)  # forgetting what was already taken changes nothing
    assert holding.held == 0


def test_a_take_with_the_wrong_card_hash_still_drops_the_record() -> None:
    holding = Holding()
    kept = record("HOLDINGTESTCARD00000003")
    holding.keep(7, kept)
    assert holding.take(7, "0" * 16) is None
    assert holding.take(7, kept.card_hash) is None and holding.held == 0


def test_a_late_forget_spares_newer_reads_and_the_bound_keeps_the_newest() -> None:
    holding = Holding()
    records = [record(f"HOLDINGTESTCARD0000001{i}") for i in range(MAX_HELD + 2)]
    for read, kept in enumerate(records, start=1):
        holding.keep(read, kept)
    assert holding.held == MAX_HELD  # only if the loop stopped deciding
    assert holding.take(1, records[0].card_hash) is None
    holding.forget(MAX_HELD)  # reads after it belong to taps the loop has not handled yet
    assert holding.held == 2
    assert holding.take(MAX_HELD + 2, records[-1].card_hash) is records[-1]


def test_take_and_forget_racing_for_one_read_hand_it_over_at_most_once() -> None:
    holding = Holding()
    kept = record("HOLDINGTESTCARD00000004")
    for read in range(1, 301):
        taken: list[ReadRecord] = []
        holding.keep(read, kept)
        start = threading.Barrier(3)

        def take(read: int = read, start: threading.Barrier = start, taken: list[ReadRecord] = taken) -> None:
            start.wait()
            if (got := holding.take(read, kept.card_hash)) is not None:
                taken.append(got)

        def forget(read: int = read, start: threading.Barrier = start) -> None:
            start.wait()
            holding.forget(read)

        threads = [threading.Thread(target=f) for f in (take, take, forget)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert holding.held == 0 and len(taken) <= 1  # two takers, one record: never handed over twice
