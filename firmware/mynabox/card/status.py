"""Status words: what they mean, and the typed error a failing one becomes.

Sources for the table: ../shared/reference/card-protocol.md §1.6 (myna, OpenSC, myna-card, JICSAP notes).
"""

from __future__ import annotations

from mynabox.card.apdu import ResponseAPDU
from mynabox.card.errors import StatusWordError

SW_OK = 0x9000

# Exact status words. Ranges (61xx, 63Cx, 6Cxx) are handled in `meaning`.
_MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x6282: "end of file reached before Le bytes",
    0x6300: "verification failed (no retry counter)",
    0x63C0: "verification failed, blocked",
    0x6581: "memory failure",
    0x6700: "wrong length (extended APDUs not supported on this path)",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable (blocked)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x69FC: "secure messaging refused",
    0x6A80: "incorrect data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A86: "incorrect P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "offset beyond end of file",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def meaning(sw: int) -> str:
    if sw in _MEANINGS:
        return _MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more bytes available"
    if sw1 == 0x6C:
        return f"wrong Le, {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    return "unknown status word"


def check(resp: ResponseAPDU, command: str) -> ResponseAPDU:
    """Return the response when it is 9000, else raise StatusWordError naming the command."""
    if resp.sw != SW_OK:
        raise StatusWordError(resp.sw, meaning(resp.sw), command)
    return resp
