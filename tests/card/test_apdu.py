"""APDU encoding: one table, tested in both directions (h11 test_io style)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card.apdu import (
    ApduFormatError,
    CommandAPDU,
    ResponseAPDU,
    read_binary,
    read_binary_sfi,
    select_aid,
    select_ef,
)
from mynabox.card.errors import MalformedResponse

CASES: list[tuple[CommandAPDU, str]] = [
    # case 1
    (CommandAPDU(0x00, 0x20, 0x00, 0x80), "00200080"),
    # case 2 short, Le 256 as 00
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=256), "00B0000000"),
    (CommandAPDU(0x00, 0xB0, 0x86, 0x00, le=0x20), "00B0860020"),
    # case 3 short
    (CommandAPDU(0x00, 0xA4, 0x02, 0x0C, bytes.fromhex("000A")), "00A4020C02000A"),
    # case 4 short
    (CommandAPDU(0x80, 0x2A, 0x00, 0x80, b"\x01\x02\x03", le=256), "802A00800301020300"),
    # case 2 extended, Le 65536 as 00 00 00
    (CommandAPDU(0x00, 0xB0, 0x8A, 0x00, le=65536, extended=True), "00B08A00000000"),
    (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=0x1234), "00B00000001234"),
    # case 3 extended (forced)
    (CommandAPDU(0x00, 0xA4, 0x02, 0x0C, b"\x00\x0a", extended=True), "00A4020C000002000A"),
    # case 4 extended: Le after data is two bytes
    (CommandAPDU(0x80, 0x2A, 0x00, 0x80, b"\xaa", le=65536, extended=True), "802A0080000001AA0000"),
]


@pytest.mark.parametrize(("command", "hex_"), CASES)
def test_encode(command: CommandAPDU, hex_: str) -> None:
    assert command.encode().hex().upper() == hex_


@pytest.mark.parametrize(("command", "hex_"), CASES)
def test_decode(command: CommandAPDU, hex_: str) -> None:
    decoded = CommandAPDU.decode(bytes.fromhex(hex_))
    assert decoded.encode() == command.encode()
    assert (decoded.cla, decoded.ins, decoded.p1, decoded.p2) == (
        command.cla,
        command.ins,
        command.p1,
        command.p2,
    )
    assert decoded.data == command.data
    assert decoded.le == command.le
    assert decoded.is_extended == command.is_extended


@pytest.mark.parametrize(
    "hex_",
    ["00B000", "00A4020C05000A", "00A4020C0000", "00B00000000002AA", "00A4020C0000030102"],
)
def test_decode_rejects_inconsistent_lengths(hex_: str) -> None:
    with pytest.raises(ApduFormatError):
        CommandAPDU.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "kwargs",
    [{"cla": 256}, {"p1": -1}, {"le": 0}, {"le": 65537}, {"data": bytes(65536)}],
)
def test_construction_rejects_out_of_range(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0}
    base.update(kwargs)
    with pytest.raises(ApduFormatError):
        CommandAPDU(**base)  # type: ignore[arg-type]


def test_builders() -> None:
    assert (
        select_aid(bytes.fromhex("D392F000260100000001")).encode().hex().upper()
        == "00A4040C0AD392F000260100000001"
    )
    assert select_ef(0x000A).encode().hex().upper() == "00A4020C02000A"
    assert read_binary(0x0100, 256).encode().hex().upper() == "00B0010000"
    assert read_binary_sfi(0x0A, 65536, extended=True).encode().hex().upper() == "00B08A00000000"
    with pytest.raises(ApduFormatError):
        read_binary(0x8000, 1)
    with pytest.raises(ApduFormatError):
        read_binary_sfi(31, 1)


def test_response_decode_and_repr_hides_data() -> None:
    resp = ResponseAPDU.decode(bytes.fromhex("DEADBEEF9000"))
    assert resp.sw == 0x9000
    assert resp.data == bytes.fromhex("DEADBEEF")
    assert resp.encode().hex().upper() == "DEADBEEF9000"
    assert "DEAD" not in repr(resp).upper()
    with pytest.raises(MalformedResponse):
        ResponseAPDU.decode(b"\x90")


commands = st.builds(
    CommandAPDU,
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.one_of(st.binary(max_size=300), st.binary(min_size=250, max_size=70000).map(lambda b: b[:65535])),
    le=st.one_of(st.none(), st.integers(1, 65536)),
    extended=st.booleans(),
).filter(lambda c: c.data or c.le is not None or not c.extended)


@given(commands)
def test_decode_encode_round_trip(command: CommandAPDU) -> None:
    decoded = CommandAPDU.decode(command.encode())
    assert decoded.encode() == command.encode()
    assert decoded.data == command.data
    assert decoded.le == command.le
    assert decoded.is_extended == command.is_extended


@given(st.binary(max_size=40))
def test_decode_random_bytes_is_typed(raw: bytes) -> None:
    with contextlib.suppress(ApduFormatError):
        CommandAPDU.decode(raw)
