"""Status words: the table's meaning and error class, and `check`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card import errors
from mynabox.card.apdu import ResponseAPDU
from mynabox.card.status import SW_OK, TABLE, check, lookup, meaning


@pytest.mark.parametrize(
    ("sw", "text", "error"),
    [
        (0x9000, "success", errors.StatusWordError),
        (0x63C3, "3 tries left", errors.VerificationFailed),
        (0x63C0, "blocked", errors.AuthenticationBlocked),
        (0x6984, "blocked", errors.AuthenticationBlocked),
        (0x6983, "blocked", errors.AuthenticationBlocked),
        (0x6982, "security status not satisfied", errors.SecurityStatusNotSatisfied),
        (0x6A82, "not found", errors.FileNotFound),
        (0x6A86, "incorrect P1-P2", errors.WrongParameters),
        (0x6A81, "function not supported", errors.NotSupported),
        (0x6B00, "offset beyond end of file", errors.EndOfFile),
        (0x6282, "end of file", errors.EndOfFile),
        (0x6986, "no current EF", errors.CommandNotAllowed),
        (0x6985, "conditions of use", errors.CommandNotAllowed),
        (0x6D00, "instruction not supported", errors.NotSupported),
        (0x6E00, "class not supported", errors.NotSupported),
        (0x6700, "wrong length", errors.WrongLength),
        (0x6C20, "32 bytes available", errors.WrongLength),
        (0x6C00, "256 bytes available", errors.WrongLength),
        (0x6110, "16 more bytes", errors.StatusWordError),
        (0x6881, "logical channel", errors.NotSupported),
        (0x6882, "secure messaging", errors.NotSupported),
        (0x69FC, "secure messaging refused", errors.NotSupported),
        (0x1234, "unknown status word", errors.StatusWordError),
    ],
)
def test_table(sw: int, text: str, error: type[errors.StatusWordError]) -> None:
    assert text in meaning(sw)
    assert lookup(sw)[1] is error


@pytest.mark.parametrize("sw", sorted(set(TABLE) - {SW_OK}))
def test_check_raises_the_tables_error(sw: int) -> None:
    text, error = TABLE[sw]
    with pytest.raises(error) as info:
        check(ResponseAPDU(b"secret", sw >> 8, sw & 0xFF), "READ")
    assert type(info.value) is error
    assert (info.value.sw, info.value.meaning, info.value.command) == (sw, text, "READ")
    assert str(info.value) == f"READ: SW {sw:04X} ({text})"
    assert "secret" not in str(info.value)


def test_check_passes_success_through() -> None:
    resp = ResponseAPDU(b"x", 0x90, 0x00)
    assert check(resp, "X") is resp


@given(st.integers(0, 0xFFFF))
def test_every_status_word_has_a_typed_error(sw: int) -> None:
    text, error = lookup(sw)
    assert text
    assert issubclass(error, errors.ProtocolError)
    if sw != SW_OK:
        with pytest.raises(errors.StatusWordError):
            check(ResponseAPDU(b"", sw >> 8, sw & 0xFF), "X")
