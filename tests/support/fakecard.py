"""The in-memory transport to a virtual card and a reader handing such cards out, for pure unit tests (no
pcscd, no sockets)."""

from __future__ import annotations

import queue
import time

from mynabox.app.ports import PresentedCard
from mynabox.card.errors import CardRemoved, CardUnresponsive
from mynabox_testkit.mynacard import CardGone, VirtualMyNumberCard


class FakeCardTransport:
    """Implements `mynabox.card.transport.Transport` over a `VirtualMyNumberCard`.

    `realtime=True` sleeps the card's latency model, for benchmarks without the PC/SC stack.
    """

    def __init__(self, card: VirtualMyNumberCard, *, realtime: bool = False) -> None:
        self.card = card
        self.realtime = realtime

    def transmit(self, command: bytes) -> bytes:
        try:
            response = self.card.process(command)
        except CardGone as gone:
            raise CardRemoved("card left the field") from gone
        if response is None:
            raise CardUnresponsive("card did not answer")
        if self.realtime:
            time.sleep(self.card.delay_for(command, response))
        return response


class FakeCard(FakeCardTransport):
    """A `PresentedCard` (mynabox.app.ports): the transport on a named reader, closed by the worker."""

    reader_name = "fake reader 0"

    def __init__(self, card: VirtualMyNumberCard) -> None:
        super().__init__(card)
        self.deadline: float | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeReader:
    """Hands out the cards `tap` queues, one per wait; `cancel` ends a wait at once."""

    def __init__(self) -> None:
        self._cards: queue.Queue[FakeCard | None] = queue.Queue()
        self.closed = False

    def tap(self, card_id: str) -> FakeCard:
        card = FakeCard(VirtualMyNumberCard(card_id))
        self._cards.put(card)
        return card

    def wait_for_card(self, timeout: float | None = None) -> PresentedCard | None:
        try:
            return self._cards.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        self._cards.put(None)

    def close(self) -> None:
        self.closed = True
