"""Status words: what they mean, and the typed error a failing one becomes.

Sources for the table: ../shared/reference/card-protocol.md §1.6 (myna, OpenSC, myna-card, JICSAP notes).
"""

from __future__ import annotations

from mynabox.card.apdu import ResponseAPDU
from mynabox.card.errors import (
    AuthenticationBlocked,
    CommandNotAllowed,
    EndOfFile,
    FileNotFound,
    NotSupported,
    SecurityStatusNotSatisfied,
    StatusWordError,
    VerificationFailed,
    WrongLength,
    WrongParameters,
)

SW_OK = 0x9000

# Exact status words: (meaning, error raised when it is not accepted).
# The families 61xx, 63Cx and 6Cxx are in `_ranged`.
TABLE: dict[int, tuple[str, type[StatusWordError]]] = {
    0x9000: ("success", StatusWordError),
    0x6282: ("end of file reached before Le bytes", EndOfFile),
    0x6300: ("verification failed (no retry counter)", VerificationFailed),
    0x63C0: ("verification failed, blocked", AuthenticationBlocked),
    0x6581: ("memory failure", StatusWordError),
    0x6700: ("wrong length (extended APDUs not supported on this path)", WrongLength),
    0x6881: ("logical channel not supported", NotSupported),
    0x6882: ("secure messaging not supported", NotSupported),
    0x6981: ("command incompatible with file structure", CommandNotAllowed),
    0x6982: ("security status not satisfied", SecurityStatusNotSatisfied),
    0x6983: ("authentication method blocked", AuthenticationBlocked),
    0x6984: ("reference data not usable (blocked)", AuthenticationBlocked),
    0x6985: ("conditions of use not satisfied", CommandNotAllowed),
    0x6986: ("command not allowed (no current EF)", CommandNotAllowed),
    0x69FC: ("secure messaging refused", NotSupported),
    0x6A80: ("incorrect data field", WrongParameters),
    0x6A81: ("function not supported", NotSupported),
    0x6A82: ("file or application not found", FileNotFound),
    0x6A86: ("incorrect P1-P2", WrongParameters),
    0x6A88: ("referenced data not found", WrongParameters),
    0x6B00: ("offset beyond end of file", EndOfFile),
    0x6D00: ("instruction not supported", NotSupported),
    0x6E00: ("class not supported", NotSupported),
    0x6F00: ("no precise diagnosis", StatusWordError),
}


def _ranged(sw: int) -> tuple[str, type[StatusWordError]] | None:
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more bytes available", StatusWordError
    if sw1 == 0x6C:
        return f"wrong Le, {sw2 or 256} bytes available", WrongLength
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left", VerificationFailed
    return None


def lookup(sw: int) -> tuple[str, type[StatusWordError]]:
    """Meaning and error class of a status word; unknown ones are plain StatusWordError."""
    return TABLE.get(sw) or _ranged(sw) or ("unknown status word", StatusWordError)


def meaning(sw: int) -> str:
    return lookup(sw)[0]


def error_for(sw: int, command: str) -> StatusWordError:
    text, error = lookup(sw)
    return error(sw, text, command)


def check(resp: ResponseAPDU, command: str) -> ResponseAPDU:
    """Return the response when it is 9000, else raise the typed StatusWordError naming the command."""
    if resp.sw != SW_OK:
        raise error_for(resp.sw, command)
    return resp
