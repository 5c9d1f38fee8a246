"""The card worker's take/forget bookkeeping on a pure fake reader (the reader port; no pcscd).

The same story as `test_workers.py` on the real PC/SC stack, plus what is awkward to arrange there: the
holding's bound when the loop stops deciding, and `held` counting what is still in memory.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from mynabox.app.holding import MAX_HELD, Holding
from mynabox.app.workers import CardWorker
from mynabox.card.certcheck import TrustStore
from mynabox.core.events import CardRead, Event
from mynabox_testkit import testca
from support.fakecard import FakeReader

TRUST = TrustStore.jlis([testca.test_ca_pem()])


@pytest.fixture
def rig() -> Iterator[tuple[FakeReader, Holding, queue.Queue[Event]]]:
    events: queue.Queue[Event] = queue.Queue()
    holding = Holding()
    reader = FakeReader()  # a `Reader` (mynabox.app.ports)
    worker = CardWorker(reader, events.put, holding, trust=TRUST, hash_key=b"k", clock_synced=lambda: True)
    worker.start()
    try:
        yield reader, holding, events
    finally:
        worker.stop()
        assert reader.closed


def tap(reader: FakeReader, events: queue.Queue[Event], card_id: str) -> CardRead:
    """Present a card, wait for the worker's CardRead (the loop that would handle it is not running)."""
    card = reader.tap(card_id)
    while not isinstance(event := events.get(timeout=10), CardRead):
        pass
    assert card.closed  # the worker always closes the connection
    return event


def test_a_late_forget_spares_reads_the_loop_has_not_handled(
    rig: tuple[FakeReader, Holding, queue.Queue[Event]],
) -> None:
    reader, holding, events = rig
    first = tap(reader, events, "FAKEREADERCARD000000001")
    second = tap(reader, events, "FAKEREADERCARD000000002")
    assert second.read == first.read + 1 and holding.held == 2
    holding.forget(first.read - 1)
    held = holding.take(second.read, second.card_hash)
    assert held is not None and held.jpki.certificate == testca.auth_certificate("FAKEREADERCARD000000002")
    held = holding.take(first.read, first.card_hash)
    assert held is not None and held.jpki.certificate == testca.auth_certificate("FAKEREADERCARD000000001")
    assert holding.take(first.read, first.card_hash) is None  # handed over once
    assert holding.held == 0

    third = tap(reader, events, "FAKEREADERCARD000000003")
    assert holding.take(third.read, first.card_hash) is None  # a number and a hash that do not match
    assert holding.held == 0  # ... and the mismatched take still dropped it
    third = tap(reader, events, "FAKEREADERCARD000000003")
    holding.forget(third.read)
    assert holding.take(third.read, third.card_hash) is None and holding.held == 0


def test_the_holding_keeps_only_the_newest_reads_when_nothing_forgets(
    rig: tuple[FakeReader, Holding, queue.Queue[Event]],
) -> None:
    reader, holding, events = rig
    reads = [tap(reader, events, f"FAKEREADERCARD00000001{i}") for i in range(MAX_HELD + 2)]
    assert holding.held == MAX_HELD
    assert holding.take(reads[0].read, reads[0].card_hash) is None  # the oldest went first
    assert holding.take(reads[1].read, reads[1].card_hash) is None
    newest = reads[-1]
    held = holding.take(newest.read, newest.card_hash)
    assert held is not None and held.card_hash == newest.card_hash
    holding.forget(newest.read)
    assert holding.held == 0  # no certificate left in memory
