"""The in-memory transport to a virtual card, for pure unit tests (no pcscd, no sockets)."""

from __future__ import annotations

import time

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
