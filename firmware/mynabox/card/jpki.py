"""The JPKI read: detect a My Number Card and read its user-authentication certificate, no PIN.

The session is a generator (yields command APDUs, receives raw responses, returns `JpkiRead`) so the
protocol is tested without any reader and the same code runs on every transport.

Round trips and bytes on the air are what a tap costs (each APDU is milliseconds over NFC, each byte
~40 µs at 212 kbit/s), so the read is built around them:
  1. SELECT the JPKI AP by AID — the only detection; the contactless ATR is made up by the reader.
  2. READ BINARY of the token EF by short EF identifier (no SELECT EF): the card type, and the probe of SFI
     support. A path without SFI reads skips the token (two more APDUs) and SELECTs EF 000A.
  3. EF 000A: the first 256 bytes (the DER header gives the length), then the rest in one extended READ
     with exactly that Le. Same APDUs and bytes as reading the 4-byte header first; never the EF's FF
     filler (an EF is larger than its certificate: asking for the whole EF carried ~900 filler bytes).
     Once a certificate length is known on this reader (`ReaderCaps.length_hint`), one extended READ of
     that length plus a margin.
Where the reader or card refuses extended lengths we fall back to 256-byte reads, and where SFI reads are
refused, to SELECT EF + READ BINARY. What worked is returned in `ReaderCaps` so the next read on the same
reader skips what failed.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import field

from mynabox.card import apdu, status
from mynabox.card.apdu import CommandAPDU, ResponseAPDU
from mynabox.card.errors import MalformedResponse, NotMyNumberCard
from mynabox.card.tlv import MAX_OBJECT, der_header_size, der_total_length
from mynabox.record import record

# Application identifiers (card-protocol.md §1.2).
AID_JPKI = bytes.fromhex("D392F000260100000001")
AID_TEXT = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP: never selected by the box
AID_VISUAL = bytes.fromhex("D3921000310001010402")  # 券面事項確認AP: never selected by the box
AID_JUKI = bytes.fromhex("D3921000310001010401")
AID_COMMON = bytes.fromhex("D3921000310001010100")

# JPKI AP elementary files (card-protocol.md §1.3).
EF_SIGN_CERT = 0x0001
EF_SIGN_CA = 0x0002
EF_TOKEN = 0x0006
EF_CERT_STATUS = 0x0008
EF_AUTH_CERT = 0x000A
EF_AUTH_CA = 0x000B
EF_AUTH_KEY = 0x0017
EF_AUTH_PIN = 0x0018
EF_SIGN_KEY = 0x001A
EF_SIGN_PIN = 0x001B

TOKEN_LEN = 0x20  # labels are ≤ 15 bytes, space-padded to 32: a stingy reader's short answer still has one
SHORT_CHUNK = 256
HINT_MARGIN = 64  # certificates differ by a few bytes (serial, validity encoding); more is read if needed
# Upper bound on APDUs in one read, whatever the card answers: no response can make us loop.
MAX_APDUS = 8 + MAX_OBJECT // SHORT_CHUNK

# Answers to an extended-length APDU that mean "not on this path": fall back to short reads.
_EXTENDED_REFUSED = frozenset({0x6700, 0x6D00, 0x6E00, 0x6A86, 0x6881, 0x6A81})
# Answers to READ BINARY by SFI that mean "SFI not supported": fall back to SELECT EF. 6B00 too: a card
# that takes P1 as an offset (b8 set: beyond any EF) says "out of range"; the token EF is never empty.
_SFI_REFUSED = frozenset({0x6A81, 0x6986, 0x6A86, 0x6A82, 0x6981, 0x6B00})
_EOF = frozenset({0x6B00, 0x6282})


class CardType(enum.Enum):
    MY_NUMBER_CARD = "my-number-card"
    JUKI_CARD = "juki-card"
    ANDROID = "android-smartphone"
    IPHONE = "iphone"
    UNKNOWN = "unknown"
    NOT_READ = "not-read"  # no SFI reads on this path: the token EF would cost two more APDUs per tap


_TOKEN_LABELS = {
    b"JPKIAPICCTOKEN2": CardType.MY_NUMBER_CARD,
    b"JPKIAPICCTOKEN": CardType.JUKI_CARD,
    b"JPKIAPGPSETOKEN": CardType.ANDROID,
    b"JPKIAPIOSTOKEN": CardType.IPHONE,
}


@record
class ReaderCaps:
    """What is known to work on a reader + card path; None means not tried yet."""

    extended: bool | None = None
    sfi: bool | None = None
    # Length of the last certificate read here: the next extended read asks for about that much, so the
    # EF's FF filler is not carried over the air (at 424 kbit/s, 1 KB of filler costs ~19 ms).
    length_hint: int | None = None


@record
class JpkiRead:
    """What the JPKI session read: the card layer's part of a read's record (`app.cardread.ReadRecord`)."""

    card_type: CardType
    certificate: bytes = field(repr=False)
    apdus: int
    caps: ReaderCaps


def card_type_of(token: bytes) -> CardType:
    label = token.rstrip(b" \x00")
    return _TOKEN_LABELS.get(label, CardType.UNKNOWN)


class _Exchange:
    """Sends one command, follows 61xx response chaining, and bounds the APDUs of the whole session."""

    def __init__(self) -> None:
        self.count = 0

    def _send(self, command: CommandAPDU) -> Generator[bytes, bytes, ResponseAPDU]:
        self.count += 1
        if self.count > MAX_APDUS:
            raise MalformedResponse(f"card kept the read going past {MAX_APDUS} APDUs")
        raw = yield command.encode()
        return ResponseAPDU.decode(raw)

    def __call__(self, command: CommandAPDU) -> Generator[bytes, bytes, ResponseAPDU]:
        resp = yield from self._send(command)
        if resp.sw1 != 0x61:
            return resp
        # 61xx (T=0 paths): the rest waits behind GET RESPONSE; PC/SC does not fetch it for us.
        data = resp.data
        while resp.sw1 == 0x61:
            resp = yield from self._send(apdu.get_response(resp.sw2 or 256))
            data += resp.data
        return ResponseAPDU(data, resp.sw1, resp.sw2)


def read_auth_certificate(caps: ReaderCaps = ReaderCaps()) -> Generator[bytes, bytes, JpkiRead]:
    """The JPKI read as a session: yields command APDUs, receives raw responses, returns `JpkiRead`.

    Raises only `CardError` subclasses, after at most `MAX_APDUS` commands, whatever the card answers.
    """
    exchange = _Exchange()

    resp = yield from exchange(apdu.select_aid(AID_JPKI))
    if resp.sw != status.SW_OK:
        raise NotMyNumberCard(f"JPKI AP not selectable: SW {resp.sw:04X} ({status.meaning(resp.sw)})")

    sfi = caps.sfi is not False
    card_type = CardType.NOT_READ
    if sfi:
        resp = yield from exchange(apdu.read_binary_sfi(EF_TOKEN, TOKEN_LEN))
        if resp.sw in _SFI_REFUSED:
            sfi = False
        else:
            card_type = card_type_of(status.check(resp, "READ token EF").data)
    if not sfi:
        status.check((yield from exchange(apdu.select_ef(EF_AUTH_CERT))), "SELECT certificate EF")

    def read(offset: int, le: int, extended: bool = False) -> CommandAPDU:
        # An SFI read makes the EF current (ISO 7816-4 7.2.2), so later offsets use plain READ BINARY.
        if sfi and offset == 0:
            return apdu.read_binary_sfi(EF_AUTH_CERT, le, extended)
        return apdu.read_binary(offset, le, extended)

    extended = caps.extended
    buf: bytes | None = None
    if caps.length_hint is not None and extended is not False:
        le = min(65536, caps.length_hint + HINT_MARGIN)
        if le > SHORT_CHUNK:
            resp = yield from exchange(read(0, le, extended=True))
            # An empty or garbled answer counts as refused: some readers mangle extended frames.
            garbled = (resp.sw == status.SW_OK or resp.sw in _EOF) and not _is_certificate_start(resp.data)
            if _extended_refused(resp) or garbled:
                extended = False
            else:
                buf, extended = _chunk(resp, le, "READ certificate (extended)"), True
    if buf is None:
        buf = _chunk((yield from exchange(read(0, SHORT_CHUNK))), SHORT_CHUNK, "READ certificate")

    # A stingy reader may cut even the first answer short of the DER header (a few bytes): read on.
    while buf and len(buf) < der_header_size(buf):
        chunk = _chunk((yield from exchange(read(len(buf), SHORT_CHUNK))), SHORT_CHUNK, "READ certificate")
        if not chunk:
            break
        buf += chunk
    total = certificate_length(buf)
    while len(buf) < total:
        want = total - len(buf)
        if want > SHORT_CHUNK and extended is not False:
            resp = yield from exchange(read(len(buf), want, extended=True))
            if _extended_refused(resp) or (resp.sw == status.SW_OK and not resp.data):
                extended = False
                continue
            chunk, extended = _chunk(resp, want, "READ certificate (extended)"), True
        else:
            want = min(SHORT_CHUNK, want)
            resp = yield from exchange(read(len(buf), want))
            if resp.sw1 == 0x6C and resp.sw2:
                want = resp.sw2  # the card names the length it can give: ask again once
                resp = yield from exchange(read(len(buf), want))
            chunk = _chunk(resp, want, "READ certificate")
        if not chunk:
            raise MalformedResponse(f"certificate truncated at {len(buf)} of {total} bytes")
        buf += chunk

    return JpkiRead(
        card_type, buf[:total], exchange.count, ReaderCaps(extended=extended, sfi=sfi, length_hint=total)
    )


def _extended_refused(resp: ResponseAPDU) -> bool:
    return resp.sw in _EXTENDED_REFUSED or resp.sw1 == 0x6C


def certificate_length(head: bytes) -> int:
    """Total DER length of the certificate whose first bytes are `head`, or MalformedResponse."""
    if not head:
        raise MalformedResponse("certificate EF is empty")
    if head[0] == 0xFF:
        raise MalformedResponse("certificate EF holds no certificate (erased)")
    if head[0] != 0x30:
        raise MalformedResponse(f"certificate EF starts with tag {head[0]:02X}, not a DER SEQUENCE")
    return der_total_length(head)


def _is_certificate_start(data: bytes) -> bool:
    try:
        certificate_length(data)
    except MalformedResponse:
        return False
    return True


def _chunk(resp: ResponseAPDU, le: int, command: str) -> bytes:
    """Data of one READ BINARY answer; end of file gives what came (possibly nothing)."""
    data = resp.data if resp.sw in _EOF else status.check(resp, command).data
    if len(data) > le:
        raise MalformedResponse(f"{command}: {len(data)} bytes returned for Le {le}")
    return data
