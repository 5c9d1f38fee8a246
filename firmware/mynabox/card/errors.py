"""Typed card errors.

Messages name what happened at the protocol level and never carry card contents, so an
exception can be logged as it is.
"""

from __future__ import annotations


class CardError(Exception):
    """Base of every error the card path raises."""


class TransportError(CardError):
    """The link to the card failed; raised by transports, translated from library errors."""


class CardRemoved(TransportError):
    """The card left the field (or was reset) before the exchange finished: hold it again."""


class ReaderGone(TransportError):
    """The reader disappeared (unplugged, driver gone)."""


class ServiceGone(TransportError):
    """The PC/SC service (pcscd) is not reachable."""


class CardUnresponsive(TransportError):
    """A card is present but does not answer ISO 7816 (e.g. a FeliCa-only card) or timed out."""


class ProtocolError(CardError):
    """The card answered, but not as a My Number Card does."""


class NotMyNumberCard(ProtocolError):
    """SELECT of the JPKI AP failed: some other ISO 7816 card."""


class MalformedResponse(ProtocolError):
    """A response that cannot be decoded (too short, bad DER, lying length)."""


class StatusWordError(ProtocolError):
    """A status word other than success where success was required."""

    def __init__(self, sw: int, meaning: str, command: str) -> None:
        super().__init__(f"{command}: SW {sw:04X} ({meaning})")
        self.sw = sw
        self.meaning = meaning
        self.command = command
