"""Typed card errors.

Messages name what happened at the protocol level and never carry card contents, so an
exception can be logged as it is.
"""

from __future__ import annotations

from mynabox.vocab import ReadFailure


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


class ReadTimeout(CardUnresponsive):
    """The card answered its ATR but not an APDU by the read's deadline: take it away, hold it again."""


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


# Refinements of StatusWordError, chosen from the status word table in `mynabox.card.status`.


class FileNotFound(StatusWordError):
    """6A82: no such file or application on this card."""


class SecurityStatusNotSatisfied(StatusWordError):
    """6982: the file or key needs a PIN first (the box never verifies one)."""


class AuthenticationBlocked(StatusWordError):
    """63C0 / 6983 / 6984: a PIN is blocked; only the municipality can reset it."""


class VerificationFailed(StatusWordError):
    """63Cx: a verification failed, x tries left."""


class WrongLength(StatusWordError):
    """6700 / 6Cxx: the length asked for is not acceptable (often: extended APDUs not supported)."""


class EndOfFile(StatusWordError):
    """6B00 / 6282: the offset is at or beyond the end of the file."""


class NotSupported(StatusWordError):
    """6D00 / 6E00 / 6A81 / 6881 / 6882 / 69FC: the card or reader path does not offer this command form."""


class WrongParameters(StatusWordError):
    """6A86 / 6A80 / 6A88: P1-P2 or the data field do not fit the command."""


class CommandNotAllowed(StatusWordError):
    """6981 / 6985 / 6986: the command does not fit the card's state (no current EF, wrong file type)."""


def read_failure(exc: CardError) -> ReadFailure:
    """What a card error means for the read (the daemon's screen and audit outcome, `mynabox read`'s exit):
    the one mapping of the card path's errors to failures."""
    if isinstance(exc, NotMyNumberCard):
        return ReadFailure.NOT_MY_NUMBER_CARD
    if isinstance(exc, CardRemoved):
        return ReadFailure.REMOVED
    if isinstance(exc, CardUnresponsive):
        return ReadFailure.UNRESPONSIVE
    if isinstance(exc, ProtocolError):
        return ReadFailure.MALFORMED
    return ReadFailure.READER_ERROR  # the reader or pcscd failed under the read: no fault of the card
