"""The transport protocol every reader implements (PC/SC, the in-memory fake card)."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """Carries one command APDU to the card and returns the full response APDU (data + SW1 SW2).

    Implementations raise only `mynabox.card.errors.TransportError` subclasses.
    """

    def transmit(self, command: bytes) -> bytes: ...
