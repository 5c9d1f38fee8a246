"""Status words, DER headers, the keyed card hash, and the session driver."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from mynabox.card.apdu import ResponseAPDU
from mynabox.card.errors import CardRemoved, MalformedResponse, StatusWordError
from mynabox.card.identity import card_key_hash
from mynabox.card.session import run
from mynabox.card.status import check, meaning
from mynabox.card.tlv import der_header, der_total_length


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "success"),
        (0x6B00, "offset beyond end of file"),
        (0x63C2, "2 tries left"),
        (0x6110, "16 more bytes"),
        (0x6C00, "256 bytes available"),
        (0x6984, "blocked"),
        (0x1234, "unknown status word"),
    ],
)
def test_meaning(sw: int, text: str) -> None:
    assert text in meaning(sw)


def test_check_raises_typed_error() -> None:
    assert check(ResponseAPDU(b"x", 0x90, 0x00), "X").data == b"x"
    with pytest.raises(StatusWordError, match="READ: SW 6982") as info:
        check(ResponseAPDU(b"", 0x69, 0x82), "READ")
    assert info.value.sw == 0x6982


@pytest.mark.parametrize(
    ("buf", "expected"),
    [("3003", (2, 3)), ("30817F", (3, 0x7F)), ("30820514", (4, 0x514)), ("3083001000", (5, 0x1000))],
)
def test_der_header(buf: str, expected: tuple[int, int]) -> None:
    assert der_header(bytes.fromhex(buf)) == expected
    assert der_total_length(bytes.fromhex(buf)) == sum(expected)


@pytest.mark.parametrize("buf", ["", "30", "3080", "308405000000", "3082", "1F8101", "30830FFFFF"])
def test_der_header_rejects(buf: str) -> None:
    with pytest.raises(MalformedResponse):
        der_header(bytes.fromhex(buf))


def test_card_key_hash_is_keyed_and_short() -> None:
    a = card_key_hash(b"cert", b"key-1")
    assert len(a) == 16
    assert a == card_key_hash(b"cert", b"key-1")
    assert a != card_key_hash(b"cert", b"key-2")
    with pytest.raises(ValueError):
        card_key_hash(b"cert", b"")


class Echo:
    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.seen: list[bytes] = []

    def transmit(self, command: bytes) -> bytes:
        self.seen.append(command)
        if self.fail_at is not None and len(self.seen) >= self.fail_at:
            raise CardRemoved("gone")
        return command + b"\x90\x00"


def two_step() -> Generator[bytes, bytes, list[bytes]]:
    first = yield b"\x01"
    second = yield b"\x02"
    return [first, second]


def test_run_drives_the_session() -> None:
    assert run(two_step(), Echo()) == [b"\x01\x90\x00", b"\x02\x90\x00"]


def test_run_propagates_transport_errors() -> None:
    with pytest.raises(CardRemoved):
        run(two_step(), Echo(fail_at=2))
