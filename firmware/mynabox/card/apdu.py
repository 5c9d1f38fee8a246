"""ISO 7816-4 APDUs: command encode/decode (cases 1-4, short and extended) and responses.

The encoder chooses the short form whenever the values fit and the extended form otherwise, unless
`extended=True` forces it (the JPKI read asks for a whole EF with one extended Le).
"""

from __future__ import annotations

from mynabox.card.errors import MalformedResponse
from mynabox.record import record

SHORT_LC_MAX = 255
SHORT_LE_MAX = 256
EXT_LC_MAX = 65535
EXT_LE_MAX = 65536


class ApduFormatError(ValueError):
    """A command APDU that cannot be encoded or decoded."""


@record
class CommandAPDU:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ApduFormatError(f"{name} out of range: {value}")
        if len(self.data) > EXT_LC_MAX:
            raise ApduFormatError(f"data too long: {len(self.data)} bytes")
        if self.le is not None and not 1 <= self.le <= EXT_LE_MAX:
            raise ApduFormatError(f"Le out of range: {self.le}")
        if self.extended and not self.data and self.le is None:
            raise ApduFormatError("an extended case 1 APDU does not exist")

    @property
    def is_extended(self) -> bool:
        return (
            self.extended or len(self.data) > SHORT_LC_MAX or (self.le is not None and self.le > SHORT_LE_MAX)
        )

    def encode(self) -> bytes:
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if not self.is_extended:
            body = b""
            if self.data:
                body += bytes((len(self.data),)) + self.data
            if self.le is not None:
                body += bytes((self.le % 256,))
            return header + body
        # Extended: one 00 marker before the first length field; a 2-byte Le after data, 3-byte without.
        body = b""
        if self.data:
            body += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
        if self.le is not None:
            le_field = (self.le % 65536).to_bytes(2, "big")
            body += le_field if self.data else b"\x00" + le_field
        return header + body

    @classmethod
    def decode(cls, raw: bytes) -> CommandAPDU:
        if len(raw) < 4:
            raise ApduFormatError(f"command APDU too short: {len(raw)} bytes")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        n = len(body)
        if n == 0:
            return cls(cla, ins, p1, p2)
        if n == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        if body[0] != 0 or n < 3:
            # Short case 3 or 4.
            lc = body[0]
            if lc == 0 or n not in (1 + lc, 2 + lc):
                raise ApduFormatError(f"short Lc {lc} does not match body length {n}")
            data = body[1 : 1 + lc]
            le = (body[1 + lc] or 256) if n == 2 + lc else None
            return cls(cla, ins, p1, p2, data=data, le=le)
        # Extended forms start with 00.
        if n == 3:
            le = int.from_bytes(body[1:3], "big") or 65536
            return cls(cla, ins, p1, p2, le=le, extended=True)
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0 or n not in (3 + lc, 5 + lc):
            raise ApduFormatError(f"extended Lc {lc} does not match body length {n}")
        data = body[3 : 3 + lc]
        le = (int.from_bytes(body[3 + lc : 5 + lc], "big") or 65536) if n == 5 + lc else None
        return cls(cla, ins, p1, p2, data=data, le=le, extended=True)


@record
class ResponseAPDU:
    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    def encode(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))

    @classmethod
    def decode(cls, raw: bytes) -> ResponseAPDU:
        if len(raw) < 2:
            raise MalformedResponse(f"response APDU too short: {len(raw)} bytes")
        return cls(raw[:-2], raw[-2], raw[-1])

    def __repr__(self) -> str:
        # Responses may carry card data: show only the size and the status word.
        return f"ResponseAPDU(len={len(self.data)}, sw={self.sw:04X})"


# -- builders for the commands the box sends ---------------------------------------------------


def select_aid(aid: bytes) -> CommandAPDU:
    """SELECT by DF name, no FCI (P2=0C), as every JPKI implementation does."""
    return CommandAPDU(0x00, 0xA4, 0x04, 0x0C, aid)


def select_ef(fid: int) -> CommandAPDU:
    return CommandAPDU(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))


def read_binary(offset: int, le: int, extended: bool = False) -> CommandAPDU:
    """READ BINARY of the current EF at a 15-bit offset."""
    if not 0 <= offset <= 0x7FFF:
        raise ApduFormatError(f"READ BINARY offset out of range: {offset}")
    return CommandAPDU(0x00, 0xB0, offset >> 8, offset & 0xFF, le=le, extended=extended)


def read_binary_sfi(sfi: int, le: int, extended: bool = False, *, offset: int = 0) -> CommandAPDU:
    """READ BINARY with a short EF identifier in P1 (b8=1): no SELECT EF round trip."""
    if not 1 <= sfi <= 30:
        raise ApduFormatError(f"SFI out of range: {sfi}")
    if not 0 <= offset <= 0xFF:
        raise ApduFormatError(f"SFI READ BINARY offset out of range: {offset}")
    return CommandAPDU(0x00, 0xB0, 0x80 | sfi, offset, le=le, extended=extended)


def get_response(le: int) -> CommandAPDU:
    """GET RESPONSE: fetch the bytes a 61xx answer says are waiting (T=0 response chaining)."""
    return CommandAPDU(0x00, 0xC0, 0x00, 0x00, le=le)
