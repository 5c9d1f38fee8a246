"""Hex transcripts of the JPKI read, and properties over hostile responses."""

from __future__ import annotations

from collections.abc import Generator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card.errors import CardError, MalformedResponse, NotMyNumberCard, StatusWordError
from mynabox.card.jpki import MAX_APDUS, CardRead, CardType, ReaderCaps, card_type_of, read_auth_certificate

SELECT_JPKI = "00A4040C0AD392F000260100000001"
TOKEN_SFI = "00B0860020"
TOKEN = (b"JPKIAPICCTOKEN2".ljust(32, b" ")).hex().upper()
CERT_EXT_SFI = "00B08A00000000"
CERT_SHORT_SFI = "00B08A0000"

# A stand-in certificate: a DER SEQUENCE of 0x514 content bytes (1304 bytes in all), then FF filler.
CERT = bytes.fromhex("30820514") + bytes(i % 251 for i in range(0x514))
EF_000A = CERT + b"\xff" * 300


def hx(b: bytes) -> str:
    return b.hex().upper()


def drive(session: Generator[bytes, bytes, CardRead], transcript: list[tuple[str, str]]) -> CardRead:
    """Check each command against the transcript and answer it; the transcript must be used up."""
    steps = iter(transcript)
    command = next(session)
    try:
        while True:
            expected, response = next(steps)
            assert command.hex().upper() == expected
            command = session.send(bytes.fromhex(response))
    except StopIteration as done:
        assert next(steps, None) is None, "session ended before the transcript"
        result: CardRead = done.value
        return result


def short_reads(cert: bytes, *, first: str = CERT_SHORT_SFI) -> list[tuple[str, str]]:
    steps = [(first, hx(EF_000A[:256]) + "9000")]
    offset = 256
    while offset < len(cert):
        n = min(256, len(cert) - offset)
        steps.append((f"00B0{offset:04X}{n % 256:02X}", hx(cert[offset : offset + n]) + "9000"))
        offset += n
    return steps


def test_extended_read_in_three_apdus() -> None:
    result = drive(
        read_auth_certificate(),
        [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), (CERT_EXT_SFI, hx(EF_000A) + "9000")],
    )
    assert result.certificate == CERT  # filler stripped to the DER length
    assert result.card_type is CardType.MY_NUMBER_CARD
    assert result.apdus == 3
    assert result.caps == ReaderCaps(extended=True, sfi=True, length_hint=len(CERT))


def test_length_hint_keeps_the_filler_off_the_air() -> None:
    hint = len(CERT) - 100  # the last card's certificate was shorter than this one
    asked = hint + 64
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (f"00B08A0000{asked:04X}", hx(EF_000A[:asked]) + "9000"),
        (f"00B0{asked:04X}{len(CERT) - asked:02X}", hx(CERT[asked:]) + "9000"),
    ]
    result = drive(read_auth_certificate(ReaderCaps(extended=True, sfi=True, length_hint=hint)), transcript)
    assert result.certificate == CERT
    assert result.caps.length_hint == len(CERT)


def test_extended_refused_falls_back_to_short_reads() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_EXT_SFI, "6700"),
        *short_reads(CERT),
    ]
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT
    assert result.caps == ReaderCaps(extended=False, sfi=True, length_hint=len(CERT))
    assert result.apdus == 3 + 6  # the refused try, then ceil(1304/256) = 6 reads


def test_known_short_reader_skips_the_extended_try() -> None:
    transcript = [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), *short_reads(CERT)]
    result = drive(read_auth_certificate(ReaderCaps(extended=False, sfi=True)), transcript)
    assert result.certificate == CERT
    assert result.apdus == 2 + 6  # the goal: 2 + ceil(len/256)


def test_sfi_refused_falls_back_to_select_ef() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, "6A81"),
        ("00A4020C020006", "9000"),
        ("00B0000020", TOKEN + "9000"),
        ("00A4020C02000A", "9000"),
        ("00B00000000000", hx(EF_000A) + "9000"),
    ]
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT
    assert result.caps == ReaderCaps(extended=True, sfi=False, length_hint=len(CERT))


def test_end_of_file_with_6b00_and_short_chunk() -> None:
    cert = bytes.fromhex("30820150") + bytes(0x150)  # 340 bytes: exactly the file, no filler
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(cert[:256]) + "9000"),
        ("00B0010054", hx(cert[256:300]) + "6282"),  # fewer bytes with the EOF warning
        ("00B0012C28", hx(cert[300:]) + "9000"),
    ]
    result = drive(read_auth_certificate(ReaderCaps(extended=False)), transcript)
    assert result.certificate == cert


def test_lying_der_length_is_truncation_not_a_loop() -> None:
    lying = bytes.fromhex("30820900") + CERT[4:]  # claims 2308 bytes, the file holds 1604
    ef = lying + b"\xff" * 300
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_EXT_SFI, hx(ef) + "9000"),
        (f"00B0{len(ef):04X}00", "6B00"),
    ]
    with pytest.raises(MalformedResponse, match="truncated"):
        drive(read_auth_certificate(), transcript)


@pytest.mark.parametrize("sw", ["6A82", "6A86", "6D00", "6E00", "6999"])
def test_not_a_my_number_card(sw: str) -> None:
    with pytest.raises(NotMyNumberCard):
        drive(read_auth_certificate(), [(SELECT_JPKI, sw)])


def test_unknown_token_is_still_read() -> None:
    token = hx(b"SOMETHINGELSE".ljust(32, b"\x00"))
    result = drive(
        read_auth_certificate(),
        [(SELECT_JPKI, "9000"), (TOKEN_SFI, token + "9000"), (CERT_EXT_SFI, hx(EF_000A) + "9000")],
    )
    assert result.card_type is CardType.UNKNOWN


def test_error_status_on_certificate_is_typed() -> None:
    with pytest.raises(StatusWordError) as info:
        drive(
            read_auth_certificate(),
            [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), (CERT_EXT_SFI, "6982")],
        )
    assert info.value.sw == 0x6982


def test_oversized_chunk_is_malformed() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(EF_000A[:300]) + "9000"),
    ]
    with pytest.raises(MalformedResponse):
        drive(read_auth_certificate(ReaderCaps(extended=False)), transcript)


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        (b"JPKIAPICCTOKEN2" + b" " * 17, CardType.MY_NUMBER_CARD),
        (b"JPKIAPICCTOKEN" + b"\x00" * 18, CardType.JUKI_CARD),
        (b"JPKIAPGPSETOKEN", CardType.ANDROID),
        (b"JPKIAPIOSTOKEN  ", CardType.IPHONE),
        (b"", CardType.UNKNOWN),
    ],
)
def test_card_type_of(label: bytes, kind: CardType) -> None:
    assert card_type_of(label) is kind


# -- properties: whatever the card answers, the read ends in a result or a CardError, boundedly ----------

SWS = [0x9000, 0x6282, 0x6B00, 0x6700, 0x6A81, 0x6A82, 0x6A86, 0x6986, 0x6C10, 0x6C00, 0x6982, 0x6D00, 0x6100]


def der_prefixed(data: bytes) -> bytes:
    return b"\x30\x82" + len(data).to_bytes(2, "big") + data


responses = st.one_of(
    st.binary(max_size=300),  # unstructured
    st.tuples(
        st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(der_prefixed)),
        st.sampled_from(SWS),
    ).map(lambda t: t[0] + t[1].to_bytes(2, "big")),
)


@given(
    st.lists(responses, min_size=1, max_size=MAX_APDUS + 5),
    st.sampled_from([ReaderCaps(), ReaderCaps(False, False)]),
)
def test_random_responses_end_in_card_error(answers: list[bytes], caps: ReaderCaps) -> None:
    session = read_auth_certificate(caps)
    sent = 0
    try:
        session.send(None)
        sent = 1
        for answer in answers:
            session.send(answer)
            sent += 1
        # Ran out of scripted answers: keep answering "file ended".
        while True:
            session.send(b"\x6b\x00")
            sent += 1
    except StopIteration as done:
        assert isinstance(done.value, CardRead)
    except CardError:
        pass
    assert sent <= MAX_APDUS
