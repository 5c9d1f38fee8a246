"""A virtual My Number Card: a pure simulator, faithful to what is known of the real chip.

Written independently of `mynabox.card` (it parses APDUs itself) so that the reader and the card are two
implementations that must agree. Behaviour follows ../shared/reference/card-protocol.md §1.3-§1.7: the five
APs, SELECT by DF name and by EF id, READ BINARY on the current EF and by SFI, short and (switchable)
extended Le, EFs padded with FF, 6B00 past the end, the token EF, VERIFY counters (63Cx, 63C0, 6984), the
signing certificate behind its password, COMPUTE DIGITAL SIGNATURE after VERIFY. `Faults` makes it hostile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from mynabox_testkit import testca

AID_JPKI = bytes.fromhex("D392F000260100000001")
AID_TEXT = bytes.fromhex("D3921000310001010408")
AID_VISUAL = bytes.fromhex("D3921000310001010402")
AID_JUKI = bytes.fromhex("D3921000310001010401")
AID_COMMON = bytes.fromhex("D3921000310001010100")

# A contactless ATR as readers make them up from ATQB (card-protocol.md §1.1).
CONTACTLESS_ATR = bytes.fromhex("3B888001000005E0B381A1007F")

OK = b"\x90\x00"
TOKEN_LABEL = b"JPKIAPICCTOKEN2"
AUTH_PIN = b"1234"
SIGN_PASSWORD = b"ABC123"


def _sw(value: int) -> bytes:
    return value.to_bytes(2, "big")


@dataclass(frozen=True)
class Faults:
    """Ways the card (or the RF link) misbehaves. All off by default."""

    remove_after: int | None = None  # the card leaves the field after answering this many APDUs
    wrong_sw: tuple[int, int] | None = None  # (INS, SW): answer every command with INS with SW instead
    truncate: int | None = None  # READ BINARY answers lose this many trailing bytes
    oversize: int = 0  # READ BINARY answers carry this many junk bytes more than asked for
    lying_der_length: int | None = None  # the auth certificate's DER header claims this content length
    latency_s: float = 0.0  # per-APDU turnaround
    baud: int | None = None  # kbit/s on the air (106/212/424/848): bytes cost time both ways
    non_jpki: bool = False  # an ISO 7816 card without the JPKI AP
    mute: bool = False  # a card that never answers an APDU (e.g. FeliCa-only behind an ISO reader)
    silent_after: int | None = None  # answers its ATR and this many APDUs, then never answers again
    cert_ef_size: int | None = None  # EF 000A holds this many bytes: FF filler after the certificate
    sfi_refused: int | None = None  # SW answering every READ BINARY by SFI (e.g. 6A86; 6B00 = P1 as offset)


@dataclass
class _EF:
    data: bytes
    size: int
    protected_by: int | None = None  # PIN EF that must be verified first
    kind: str = "binary"  # binary | pin | key


@dataclass
class _Pin:
    value: bytes
    tries: int
    left: int = field(init=False)
    verified: bool = False

    def __post_init__(self) -> None:
        self.left = self.tries


@dataclass
class _Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None
    extended: bool


class CardGone(Exception):
    """The simulated card has left the field."""


class VirtualMyNumberCard:
    def __init__(self, card_id: str, *, extended: bool = True, faults: Faults | None = None) -> None:
        self.card_id = card_id
        self.extended = extended
        self.faults = faults or Faults()
        self.atr = CONTACTLESS_ATR
        self.log: list[bytes] = []
        self.apdu_count = 0
        self.air_bytes = 0  # command and response bytes of every exchange answered
        self.gone = self.faults.remove_after == 0
        self._dfs = self._build_files()
        self._pins: dict[tuple[bytes, int], _Pin] = {
            (AID_JPKI, 0x18): _Pin(AUTH_PIN, 3),
            (AID_JPKI, 0x1B): _Pin(SIGN_PASSWORD, 5),
            (AID_TEXT, 0x11): _Pin(b"1234", 3),
            (AID_VISUAL, 0x11): _Pin(b"1234", 3),
        }
        self.reset()

    def __repr__(self) -> str:
        return f"VirtualMyNumberCard(apdus={self.apdu_count}, gone={self.gone})"

    # -- files ------------------------------------------------------------------------------------

    def _build_files(self) -> dict[bytes, dict[int, _EF]]:
        auth = testca.auth_certificate(self.card_id)
        if self.faults.lying_der_length is not None:
            auth = b"\x30\x82" + self.faults.lying_der_length.to_bytes(2, "big") + auth[4:]
        token = TOKEN_LABEL.ljust(32, b" ") + b"J-LIS TEST".ljust(32, b" ") + b"MYNABOX-VCARD".ljust(16, b" ")
        token += self.card_id.encode()[:16].ljust(16, b" ") + bytes(64)

        def ef(data: bytes, protected_by: int | None = None) -> _EF:
            size = max(2048, -(-len(data) // 256) * 256) if len(data) > 256 else len(data)
            return _EF(data, size, protected_by)

        auth_ef = ef(auth)
        if self.faults.cert_ef_size is not None:
            auth_ef.size = max(len(auth), self.faults.cert_ef_size)
        jpki = {
            0x01: ef(testca.sign_certificate(self.card_id), protected_by=0x1B),
            0x02: ef(testca.sign_ca_der()),
            0x06: _EF(token, 160),
            0x08: _EF(b"\x8f\x8f\x00", 3),
            0x0A: auth_ef,
            0x0B: ef(testca.test_ca_der()),
            0x17: _EF(b"", 0, kind="key"),
            0x18: _EF(b"", 0, kind="pin"),
            0x1A: _EF(b"", 0, kind="key"),
            0x1B: _EF(b"", 0, kind="pin"),
        }
        # The 券面 APs exist and guard their data; the box must never go there (tests read `.log`).
        text = {fid: _EF(b"\xff" * 32, 32, protected_by=0x11) for fid in (0x01, 0x02, 0x03)}
        text.update(
            {0x11: _EF(b"", 0, kind="pin"), 0x14: _EF(b"", 0, kind="pin"), 0x15: _EF(b"", 0, kind="pin")}
        )
        visual = {fid: _EF(b"\xff" * 32, 32, protected_by=0x11) for fid in (0x01, 0x02, 0x05)}
        visual.update(
            {0x11: _EF(b"", 0, kind="pin"), 0x12: _EF(b"", 0, kind="pin"), 0x13: _EF(b"", 0, kind="pin")}
        )
        files: dict[bytes, dict[int, _EF]] = {
            AID_TEXT: text,
            AID_VISUAL: visual,
            AID_JUKI: {},
            AID_COMMON: {},
        }
        if not self.faults.non_jpki:
            files[AID_JPKI] = jpki
        return files

    def _content(self, ef: _EF) -> bytes:
        return ef.data + b"\xff" * (ef.size - len(ef.data))

    # -- the card ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Power cycle: selection and verification states are lost, retry counters are not."""
        self._df: bytes | None = None
        self._ef: int | None = None
        for pin in self._pins.values():
            pin.verified = False

    def delay_for(self, command: bytes, response: bytes) -> float:
        """Seconds this exchange takes on the modelled RF link."""
        seconds = self.faults.latency_s
        if self.faults.baud:
            seconds += (len(command) + len(response)) * 8 / (self.faults.baud * 1000)
        return seconds

    def process(self, command: bytes) -> bytes | None:
        """Answer one command APDU; None when the card is mute. Raises CardGone once it has left."""
        if self.gone:
            raise CardGone("card left the field")
        self.log.append(bytes(command))
        self.apdu_count += 1
        if self.faults.mute:
            return None
        if self.faults.silent_after is not None and self.apdu_count > self.faults.silent_after:
            return None
        response = self._answer(command)
        self.air_bytes += len(command) + len(response)
        if self.faults.remove_after is not None and self.apdu_count >= self.faults.remove_after:
            self.gone = True
        return response

    def _answer(self, raw: bytes) -> bytes:
        cmd = _parse(raw)
        if cmd is None:
            return _sw(0x6700)
        if self.faults.wrong_sw is not None and cmd.ins == self.faults.wrong_sw[0]:
            return _sw(self.faults.wrong_sw[1])
        if cmd.extended and not self.extended:
            return _sw(0x6700)
        if cmd.cla & 0x0C:
            return _sw(0x6882)
        if cmd.cla & 0x03:
            return _sw(0x6881)
        if cmd.cla & 0xF0 not in (0x00, 0x80):
            return _sw(0x6E00)
        handler = {
            0xA4: self._select,
            0xB0: self._read_binary,
            0x20: self._verify,
            0x2A: self._sign,
        }.get(cmd.ins)
        if handler is None:
            return _sw(0x6D00)
        return handler(cmd)

    def _files(self) -> dict[int, _EF] | None:
        return None if self._df is None else self._dfs[self._df]

    def _select(self, cmd: _Command) -> bytes:
        if cmd.cla != 0x00:
            return _sw(0x6E00)
        if cmd.p2 not in (0x0C, 0x00):
            return _sw(0x6A86)
        if cmd.p1 == 0x04:
            if cmd.data not in self._dfs:
                return _sw(0x6A82)
            self._df, self._ef = cmd.data, None
            return OK
        if cmd.p1 == 0x02:
            files = self._files()
            if files is None:
                return _sw(0x6986)
            if len(cmd.data) != 2:
                return _sw(0x6A87)
            fid = int.from_bytes(cmd.data, "big")
            if fid not in files:
                return _sw(0x6A82)
            self._ef = fid
            return OK
        return _sw(0x6A86)

    def _read_binary(self, cmd: _Command) -> bytes:
        if cmd.cla != 0x00:
            return _sw(0x6E00)
        files = self._files()
        if cmd.p1 & 0x80 and self.faults.sfi_refused is not None:
            return _sw(self.faults.sfi_refused)
        if cmd.p1 & 0x80:
            sfi = cmd.p1 & 0x1F
            if cmd.p1 & 0x60 or files is None or sfi not in files:
                return _sw(0x6A82 if files is not None else 0x6986)
            self._ef, offset = sfi, cmd.p2
        else:
            if files is None or self._ef is None:
                return _sw(0x6986)
            offset = (cmd.p1 << 8) | cmd.p2
        ef = files[self._ef]
        if ef.kind != "binary":
            return _sw(0x6981)
        if ef.protected_by is not None and not self._verified(ef.protected_by):
            return _sw(0x6982)
        if cmd.le is None:
            return _sw(0x6700)
        content = self._content(ef)
        if offset >= len(content):
            return _sw(0x6B00)
        data = content[offset : offset + cmd.le]
        if self.faults.truncate and len(data) > self.faults.truncate:
            data = data[: -self.faults.truncate]
        data += b"\x5a" * self.faults.oversize
        return data + OK

    def _pin_for(self, cmd: _Command) -> _Pin | None:
        if self._df is None:
            return None
        fid = cmd.p2 & 0x1F if cmd.p2 & 0x1F else self._ef
        if fid is None:
            return None
        return self._pins.get((self._df, fid))

    def _verified(self, pin_fid: int) -> bool:
        pin = self._pins.get((self._df or b"", pin_fid))
        return pin is not None and pin.verified

    def _verify(self, cmd: _Command) -> bytes:
        if cmd.cla != 0x00 or cmd.p1 != 0x00 or not cmd.p2 & 0x80:
            return _sw(0x6A86)
        pin = self._pin_for(cmd)
        if pin is None:
            return _sw(0x6A88)
        if not cmd.data:  # a query: costs no try
            if pin.verified:
                return OK
            return _sw(0x6984) if pin.left == 0 else _sw(0x63C0 | pin.left)
        if pin.left == 0:
            return _sw(0x6984)
        if cmd.data == pin.value:
            pin.left, pin.verified = pin.tries, True
            return OK
        pin.left -= 1
        pin.verified = False
        return _sw(0x63C0 | pin.left)

    def _sign(self, cmd: _Command) -> bytes:
        if cmd.cla != 0x80:
            return _sw(0x6E00)
        if cmd.p1 != 0x00 or cmd.p2 != 0x80:
            return _sw(0x6A86)
        if self._df != AID_JPKI or self._ef not in (0x17, 0x1A):
            return _sw(0x6985)
        pin_fid, key = (
            (0x18, testca.auth_private_key) if self._ef == 0x17 else (0x1B, testca.sign_private_key)
        )
        if not self._verified(pin_fid):
            return _sw(0x6982)
        if not 1 <= len(cmd.data) <= 245:
            return _sw(0x6700)
        return _pkcs1_sign(key(self.card_id), cmd.data) + OK


def _pkcs1_sign(key: rsa.RSAPrivateKey, digest_info: bytes) -> bytes:
    """RSA with PKCS#1 v1.5 type 1 padding over data given as is, as the card does."""
    numbers = key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    k = (n.bit_length() + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info)) + b"\x00" + digest_info
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def _parse(raw: bytes) -> _Command | None:
    """ISO 7816-4 command APDU, cases 1-4 short and extended; None when lengths are inconsistent."""
    if len(raw) < 4:
        return None
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return _Command(cla, ins, p1, p2, b"", None, False)
    if len(body) == 1:
        return _Command(cla, ins, p1, p2, b"", body[0] or 256, False)
    if body[0] != 0:
        lc = body[0]
        rest = body[1:]
        if len(rest) == lc:
            return _Command(cla, ins, p1, p2, rest, None, False)
        if len(rest) == lc + 1:
            return _Command(cla, ins, p1, p2, rest[:lc], rest[lc] or 256, False)
        return None
    if len(body) == 3:
        return _Command(cla, ins, p1, p2, b"", int.from_bytes(body[1:], "big") or 65536, True)
    lc = int.from_bytes(body[1:3], "big")
    rest = body[3:]
    if lc == 0:
        return None
    if len(rest) == lc:
        return _Command(cla, ins, p1, p2, rest, None, True)
    if len(rest) == lc + 2:
        return _Command(cla, ins, p1, p2, rest[:lc], int.from_bytes(rest[lc:], "big") or 65536, True)
    return None
