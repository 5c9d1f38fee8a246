"""APDU encoding: one table, tested in both directions (h11 test_io style)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card.apdu import (
    ApduFormatError,
    CommandAPDU,
    ResponseAPDU,
    get_response,
    read_binary,
    read_binary_sfi,
    select_aid,
    select_ef,
)
from mynabox.card.errors import MalformedResponse

BIG = bytes(range(256)) + b"\x5a"  # 257 bytes: too long for a short Lc

# Every command here is in its canonical form (extended=True exactly when the wire form is extended), so
# the same row checks encode(command) == wire and decode(wire) == command.
CASES: list[tuple[CommandAPDU, str]] = [
    # case 1
    (CommandAPDU(0x00, 0x20, 0x00, 0x80), "00200080"),
    # case 2 short: Le 1, 255, and 256 as 00
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=1), "00B0000001"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=255), "00B00000FF"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=256), "00B0000000"),
    (CommandAPDU(0x00, 0xB0, 0x86, 0x00, le=0x20), "00B0860020"),
    # case 3 short: Lc 1 and 255
    (CommandAPDU(0x00, 0xA4, 0x02, 0x0C, bytes.fromhex("000A")), "00A4020C02000A"),
    (CommandAPDU(0x00, 0xD6, 0x00, 0x00, b"\x01"), "00D600000101"),
    (CommandAPDU(0x00, 0xD6, 0x00, 0x00, BIG[:255]), "00D60000FF" + BIG[:255].hex().upper()),
    # case 4 short
    (CommandAPDU(0x80, 0x2A, 0x00, 0x80, b"\x01\x02\x03", le=256), "802A00800301020300"),
    (CommandAPDU(0x00, 0x88, 0x00, 0x00, b"\xaa", le=1), "0088000001AA01"),
    # case 2 extended: 3-byte Le, 65536 as 00 00 00, and forced for a small Le
    (CommandAPDU(0x00, 0xB0, 0x8A, 0x00, le=65536, extended=True), "00B08A00000000"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=0x1234, extended=True), "00B00000001234"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=257, extended=True), "00B00000000101"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=256, extended=True), "00B00000000100"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=1, extended=True), "00B00000000001"),
    # case 3 extended: forced, and needed for Lc 257
    (CommandAPDU(0x00, 0xA4, 0x02, 0x0C, b"\x00\x0a", extended=True), "00A4020C000002000A"),
    (CommandAPDU(0x00, 0xD6, 0x00, 0x00, BIG, extended=True), "00D60000000101" + BIG.hex().upper()),
    # case 4 extended: Le after data is two bytes, 65536 as 00 00
    (CommandAPDU(0x80, 0x2A, 0x00, 0x80, b"\xaa", le=65536, extended=True), "802A0080000001AA0000"),
    (CommandAPDU(0x80, 0x2A, 0x00, 0x80, b"\xaa", le=256, extended=True), "802A0080000001AA0100"),
    (
        CommandAPDU(0x00, 0xD6, 0x00, 0x00, BIG, le=2, extended=True),
        "00D60000000101" + BIG.hex().upper() + "0002",
    ),
]


@pytest.mark.parametrize(("command", "wire"), CASES)
def test_encode(command: CommandAPDU, wire: str) -> None:
    assert command.encode().hex().upper() == wire


@pytest.mark.parametrize(("command", "wire"), CASES)
def test_decode(command: CommandAPDU, wire: str) -> None:
    assert CommandAPDU.decode(bytes.fromhex(wire)) == command


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        # The form is chosen by the values: no need to say extended=True for these.
        (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000"),
        (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=300), "00B0000000012C"),
        (CommandAPDU(0x00, 0xD6, 0x00, 0x00, BIG), "00D60000000101" + BIG.hex().upper()),
        (CommandAPDU(0x00, 0xD6, 0x00, 0x00, b"\x01", le=257), "00D6000000000101" + "0101"),
    ],
)
def test_extended_is_chosen_when_values_need_it(command: CommandAPDU, wire: str) -> None:
    assert command.is_extended
    assert command.encode().hex().upper() == wire
    assert CommandAPDU.decode(bytes.fromhex(wire)) == replace(command, extended=True)


@pytest.mark.parametrize(
    "wire",
    [
        "",  # no header
        "00B000",  # header cut short
        "00D6000003010203040506",  # short Lc 3 with six bytes after it
        "00A4020C05000A",  # short Lc longer than the data
        "00A4020C02000A0000",  # short: two bytes after the data
        "00A4020C0000",  # two-byte body starting 00
        "00B00000000002AA",  # extended Lc 2 with one data byte
        "00A4020C0000030102",  # extended Lc 3 with two data bytes
        "00A4020C0000000000",  # extended Lc 0 followed by an Le
    ],
)
def test_decode_rejects(wire: str) -> None:
    with pytest.raises(ApduFormatError):
        CommandAPDU.decode(bytes.fromhex(wire))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 256},
        {"p1": -1},
        {"p2": 0x100},
        {"le": 0},
        {"le": 65537},
        {"data": bytes(65536)},
        {"extended": True},  # an extended case 1 does not exist
    ],
)
def test_construction_rejects_out_of_range(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0}
    base.update(kwargs)
    with pytest.raises(ApduFormatError):
        CommandAPDU(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (select_aid(bytes.fromhex("D392F000260100000001")), "00A4040C0AD392F000260100000001"),
        (select_ef(0x000A), "00A4020C02000A"),
        (read_binary(0, 0x20), "00B0000020"),
        (read_binary(0x0100, 256), "00B0010000"),
        (read_binary(0x7FFF, 1), "00B07FFF01"),
        (read_binary(0, 65536, True), "00B00000000000"),
        (read_binary_sfi(0x06, 0x20), "00B0860020"),
        (read_binary_sfi(0x0A, 256), "00B08A0000"),
        (read_binary_sfi(0x0A, 65536, True), "00B08A00000000"),
        (read_binary_sfi(0x0A, 16, offset=0xFF), "00B08AFF10"),
        (get_response(0x10), "00C0000010"),
    ],
)
def test_builders(command: CommandAPDU, wire: str) -> None:
    assert command.encode().hex().upper() == wire


@pytest.mark.parametrize(
    "build",
    [
        lambda: read_binary(0x8000, 1),
        lambda: read_binary(-1, 1),
        lambda: read_binary_sfi(0, 1),
        lambda: read_binary_sfi(31, 1),
        lambda: read_binary_sfi(1, 1, offset=256),
    ],
)
def test_builders_reject_out_of_range(build: object) -> None:
    with pytest.raises(ApduFormatError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("wire", "data", "sw"),
    [
        ("9000", "", 0x9000),
        ("DEADBEEF9000", "DEADBEEF", 0x9000),
        ("6B00", "", 0x6B00),
        ("0161FF", "01", 0x61FF),
    ],
)
def test_response_both_ways(wire: str, data: str, sw: int) -> None:
    resp = ResponseAPDU.decode(bytes.fromhex(wire))
    assert (resp.data, resp.sw) == (bytes.fromhex(data), sw)
    assert resp == ResponseAPDU(bytes.fromhex(data), sw >> 8, sw & 0xFF)
    assert resp.encode().hex().upper() == wire


@pytest.mark.parametrize("wire", ["", "90"])
def test_response_too_short(wire: str) -> None:
    with pytest.raises(MalformedResponse):
        ResponseAPDU.decode(bytes.fromhex(wire))


def test_response_repr_hides_data() -> None:
    assert "DEAD" not in repr(ResponseAPDU.decode(bytes.fromhex("DEADBEEF9000"))).upper()


# -- properties ------------------------------------------------------------------------------------


@st.composite
def commands(draw: st.DrawFn) -> CommandAPDU:
    data = draw(st.one_of(st.binary(max_size=300), st.integers(250, 65535).map(bytes)))
    le = draw(st.one_of(st.none(), st.integers(1, 65536), st.sampled_from([1, 255, 256, 257, 65535, 65536])))
    # An extended case 1 does not exist: only ask for the extended form when there is a length field.
    extended = draw(st.booleans()) and (bool(data) or le is not None)
    cla, ins, p1, p2 = (draw(st.integers(0, 255)) for _ in range(4))
    return CommandAPDU(cla, ins, p1, p2, data=data, le=le, extended=extended)


@given(commands())
def test_decode_encode_round_trip(command: CommandAPDU) -> None:
    canonical = replace(command, extended=command.is_extended)
    assert CommandAPDU.decode(command.encode()) == canonical
    assert canonical.encode() == command.encode()


@given(st.binary(max_size=40))
def test_decode_random_bytes_is_typed(raw: bytes) -> None:
    with contextlib.suppress(ApduFormatError):
        CommandAPDU.decode(raw)


@given(st.binary())
def test_response_decode_random_bytes(raw: bytes) -> None:
    try:
        resp = ResponseAPDU.decode(raw)
    except MalformedResponse:
        assert len(raw) < 2
    else:
        assert resp.encode() == raw
