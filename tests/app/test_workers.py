"""The card worker on the real PC/SC stack: reads are held by number until delivered or forgotten."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from mynabox.adapters.pcsc import PcscReader
from mynabox.app.holding import Holding
from mynabox.app.workers import CardWorker
from mynabox.card.certcheck import TrustStore
from mynabox.core.events import CardRead, Event
from mynabox_testkit import testca
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.pcscd import PrivatePcscd
from mynabox_testkit.vpcd import VpcdCardServer

pytestmark = pytest.mark.stack
TRUST = TrustStore.jlis([testca.test_ca_pem()])
FIRST, SECOND = "WORKERTESTCARD000000001", "WORKERTESTCARD000000002"


@pytest.fixture
def stack() -> Iterator[tuple[PrivatePcscd, Holding, queue.Queue[Event]]]:
    events: queue.Queue[Event] = queue.Queue()
    holding = Holding()
    with PrivatePcscd() as pcscd:
        pcscd.use_in_process()
        worker = CardWorker(
            PcscReader(), events.put, holding, trust=TRUST, hash_key=b"k", clock_synced=lambda: True
        )
        worker.start()
        try:
            yield pcscd, holding, events
        finally:
            worker.stop()


def tap(pcscd: PrivatePcscd, events: queue.Queue[Event], card_id: str) -> CardRead:
    """Present a card, wait for the worker's CardRead (the loop that would handle it is not running)."""
    pcscd.wait_empty()
    server = VpcdCardServer(VirtualMyNumberCard(card_id), port=pcscd.vpcd_port).start()
    try:
        while not isinstance(event := events.get(timeout=15), CardRead):
            pass
        return event
    finally:
        server.remove()


def test_a_late_forget_spares_reads_the_loop_has_not_handled(
    stack: tuple[PrivatePcscd, Holding, queue.Queue[Event]],
) -> None:
    pcscd, holding, events = stack
    first = tap(pcscd, events, FIRST)
    second = tap(pcscd, events, SECOND)  # tapped before the first was delivered
    assert second.read == first.read + 1
    holding.forget(first.read - 1)  # the loop clearing an older patient's screen
    held = holding.take(second.read, second.card_hash)
    assert held is not None and held.jpki.certificate == testca.auth_certificate(SECOND)
    held = holding.take(first.read, first.card_hash)  # the second tap did not overwrite the first
    assert held is not None and held.jpki.certificate == testca.auth_certificate(FIRST)
    assert holding.take(first.read, first.card_hash) is None  # handed over once

    third = tap(pcscd, events, "WORKERTESTCARD000000003")
    assert holding.take(third.read, first.card_hash) is None  # a number and a hash that do not match
    third = tap(pcscd, events, "WORKERTESTCARD000000003")
    holding.forget(third.read)  # screen cleared: the patient leaves memory
    assert holding.take(third.read, third.card_hash) is None
