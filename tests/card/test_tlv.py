"""DER headers: how long an object is, from its first bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card.errors import MalformedResponse
from mynabox.card.tlv import MAX_OBJECT, der_header, der_total_length


@pytest.mark.parametrize(
    ("buf", "expected"),
    [
        ("3000", (2, 0)),
        ("3003", (2, 3)),
        ("307F", (2, 0x7F)),
        ("30817F", (3, 0x7F)),
        ("308180", (3, 0x80)),
        ("30820514", (4, 0x514)),
        ("30820514FFFF", (4, 0x514)),  # what follows the header does not matter
        ("3083001000", (5, 0x1000)),
        ("30824000", (4, MAX_OBJECT)),
        ("0401AA", (2, 1)),
    ],
)
def test_der_header(buf: str, expected: tuple[int, int]) -> None:
    assert der_header(bytes.fromhex(buf)) == expected
    assert der_total_length(bytes.fromhex(buf)) == sum(expected)


@pytest.mark.parametrize(
    "buf",
    [
        "",  # nothing
        "30",  # tag only
        "3081",  # long form cut short
        "3082",
        "308205",
        "3080",  # indefinite length (BER, never DER)
        "308405000000",  # four length bytes: absurd for a card EF
        "1F8101",  # high tag number
        "FF8101",  # erased EF (FF filler) looks like a high tag
        "30824001",  # one past the 16 KiB bound
        "30830FFFFF",
    ],
)
def test_der_header_rejects(buf: str) -> None:
    with pytest.raises(MalformedResponse):
        der_header(bytes.fromhex(buf))


@given(st.binary(max_size=8))
def test_der_header_of_any_bytes_is_a_length_or_malformed(buf: bytes) -> None:
    try:
        header, content = der_header(buf)
    except MalformedResponse:
        return
    assert 2 <= header <= min(len(buf), 5)
    assert 0 <= content <= MAX_OBJECT
