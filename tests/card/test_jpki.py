"""Hex transcripts of the JPKI read, and properties over hostile responses."""

from __future__ import annotations

import itertools
from collections.abc import Generator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card.apdu import CommandAPDU
from mynabox.card.certcheck import CertStatus, TrustStore, check_certificate
from mynabox.card.errors import (
    CardError,
    MalformedResponse,
    NotMyNumberCard,
    SecurityStatusNotSatisfied,
    StatusWordError,
)
from mynabox.card.jpki import (
    AID_JPKI,
    EF_AUTH_CERT,
    HINT_MARGIN,
    MAX_APDUS,
    CardType,
    JpkiRead,
    ReaderCaps,
    card_type_of,
    certificate_length,
    read_auth_certificate,
)
from mynabox.card.session import run
from mynabox_testkit import testca
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from support.fakecard import FakeCardTransport

SELECT_JPKI = "00A4040C0AD392F000260100000001"
SELECT_CERT = "00A4020C02000A"
TOKEN_SFI = "00B0860020"
TOKEN_BYTES = b"JPKIAPICCTOKEN2".ljust(32, b" ")
TOKEN = TOKEN_BYTES.hex().upper()
CERT_SHORT_SFI = "00B08A0000"  # the first 256 bytes of EF 000A by SFI
CERT_SHORT = "00B0000000"  # the same after SELECT EF

# A stand-in certificate: a DER SEQUENCE of 0x514 content bytes (1304 bytes in all), then FF filler.
CERT = bytes.fromhex("30820514") + bytes(i % 251 for i in range(0x514))
EF_000A = CERT + b"\xff" * 300


def hx(b: bytes) -> str:
    return b.hex().upper()


def rest_ext(offset: int, n: int) -> str:
    """Extended READ BINARY of `n` bytes at `offset` of the current EF."""
    return f"00B0{offset:04X}00{n:04X}"


def drive(session: Generator[bytes, bytes, JpkiRead], transcript: list[tuple[str, str]]) -> JpkiRead:
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
        result: JpkiRead = done.value
        return result


def chunks_from(cert: bytes, offset: int) -> list[tuple[str, str]]:
    steps = []
    while offset < len(cert):
        n = min(256, len(cert) - offset)
        steps.append((f"00B0{offset:04X}{n % 256:02X}", hx(cert[offset : offset + n]) + "9000"))
        offset += n
    return steps


def short_reads(cert: bytes, *, first: str = CERT_SHORT_SFI) -> list[tuple[str, str]]:
    return [(first, hx(EF_000A[:256]) + "9000"), *chunks_from(cert, 256)]


def first_tap(first: str = CERT_SHORT_SFI) -> list[tuple[str, str]]:
    """EF 000A on a first tap: 256 bytes (the header gives the length), then exactly the rest."""
    return [(first, hx(EF_000A[:256]) + "9000"), (rest_ext(256, len(CERT) - 256), hx(CERT[256:]) + "9000")]


def test_first_tap_reads_256_bytes_then_exactly_the_rest_no_filler() -> None:
    """Before: one extended READ of the whole EF (Le 65536), the FF filler crossing the air."""
    result = drive(
        read_auth_certificate(), [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), *first_tap()]
    )
    assert result.certificate == CERT  # filler stripped to the DER length
    assert result.card_type is CardType.MY_NUMBER_CARD
    assert result.apdus == 4  # the minimal exchange (SELECT, header, rest) plus the token
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


def test_length_hint_of_this_length_is_one_read() -> None:
    asked = len(CERT) + HINT_MARGIN
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (f"00B08A0000{asked:04X}", hx(EF_000A[:asked]) + "9000"),
    ]
    result = drive(read_auth_certificate(ReaderCaps(True, True, length_hint=len(CERT))), transcript)
    assert result.certificate == CERT and result.apdus == 3


def test_extended_refused_falls_back_to_short_reads() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(EF_000A[:256]) + "9000"),
        (rest_ext(256, len(CERT) - 256), "6700"),
        *chunks_from(CERT, 256),
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


def test_sfi_refused_falls_back_to_select_ef_without_the_token() -> None:
    """Without SFI the token would cost SELECT + READ on every tap: it is not read (before: 6 APDUs and
    the whole EF; now 5, the minimal 4 plus the refused probe)."""
    transcript = [(SELECT_JPKI, "9000"), (TOKEN_SFI, "6A81"), (SELECT_CERT, "9000"), *first_tap(CERT_SHORT)]
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT
    assert result.card_type is CardType.NOT_READ
    assert result.caps == ReaderCaps(extended=True, sfi=False, length_hint=len(CERT))
    assert result.apdus == 5


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
        (CERT_SHORT_SFI, hx(ef[:256]) + "9000"),
        (rest_ext(256, 2308 - 256), hx(ef[256:]) + "9000"),
        (rest_ext(len(ef), 2308 - len(ef)), "6B00"),
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
        read_auth_certificate(), [(SELECT_JPKI, "9000"), (TOKEN_SFI, token + "9000"), *first_tap()]
    )
    assert result.card_type is CardType.UNKNOWN


def test_error_status_on_certificate_is_typed() -> None:
    with pytest.raises(SecurityStatusNotSatisfied) as info:
        drive(
            read_auth_certificate(),
            [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), (CERT_SHORT_SFI, "6982")],
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
        (b"JPKIAPICCTOKEN2 ", CardType.MY_NUMBER_CARD),
        (b"JPKIAPICCTOKEN" + b"\x00" * 18, CardType.JUKI_CARD),
        (b"JPKIAPICCTOKEN  ", CardType.JUKI_CARD),
        (b"JPKIAPGPSETOKEN", CardType.ANDROID),
        (b"JPKIAPIOSTOKEN  ", CardType.IPHONE),
        (b"", CardType.UNKNOWN),
    ],
)
def test_card_type_of(label: bytes, kind: CardType) -> None:
    assert card_type_of(label) is kind


@pytest.mark.parametrize("sw", ["6A81", "6986", "6A86", "6A82", "6B00"])
def test_every_sfi_refusal_falls_back(sw: str) -> None:
    transcript = [(SELECT_JPKI, "9000"), (TOKEN_SFI, sw), (SELECT_CERT, "9000"), *first_tap(CERT_SHORT)]
    assert drive(read_auth_certificate(), transcript).caps.sfi is False


def test_known_no_sfi_reader_goes_straight_to_select_ef() -> None:
    transcript = [(SELECT_JPKI, "9000"), (SELECT_CERT, "9000"), *short_reads(CERT, first=CERT_SHORT)]
    result = drive(read_auth_certificate(ReaderCaps(extended=False, sfi=False)), transcript)
    assert result.certificate == CERT
    assert result.apdus == 2 + 6


def test_known_no_sfi_reader_with_a_hint_is_three_apdus() -> None:
    asked = len(CERT) + HINT_MARGIN
    transcript = [
        (SELECT_JPKI, "9000"),
        (SELECT_CERT, "9000"),
        (rest_ext(0, asked), hx(EF_000A[:asked]) + "9000"),
    ]
    result = drive(read_auth_certificate(ReaderCaps(True, False, length_hint=len(CERT))), transcript)
    assert result.certificate == CERT and result.apdus == 3  # fewer than the minimal exchange's 4


@pytest.mark.parametrize("sw", ["6700", "6D00", "6E00", "6A86", "6881", "6C00", "6C10"])
def test_every_extended_refusal_falls_back(sw: str) -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(EF_000A[:256]) + "9000"),
        (rest_ext(256, len(CERT) - 256), sw),
        *chunks_from(CERT, 256),
    ]
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT
    assert result.caps.extended is False


@pytest.mark.parametrize(
    "answer",
    [
        "9000",  # empty
        "6282",  # empty, end of file at offset 0
        "6B00",
        "0102030405069000",  # not a DER SEQUENCE
        "30809000",  # indefinite length
    ],
)
def test_empty_or_garbled_extended_answer_falls_back(answer: str) -> None:
    hint = len(CERT)
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (f"00B08A0000{hint + HINT_MARGIN:04X}", answer),
        *short_reads(CERT),
    ]
    result = drive(read_auth_certificate(ReaderCaps(None, True, length_hint=hint)), transcript)
    assert result.certificate == CERT
    assert result.caps.extended is False


def test_empty_extended_rest_falls_back_to_short_reads() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(EF_000A[:256]) + "9000"),
        (rest_ext(256, len(CERT) - 256), "9000"),
        *chunks_from(CERT, 256),
    ]
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT and result.caps.extended is False


def test_short_extended_answer_continues_from_where_it_ended() -> None:
    # A reader that caps the frame at 261 bytes: each answer is 259 bytes, the next read starts there.
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(EF_000A[:256]) + "9000"),
    ]
    offset = 256
    while len(CERT) - offset > 256:
        transcript.append((rest_ext(offset, len(CERT) - offset), hx(CERT[offset : offset + 259]) + "9000"))
        offset += 259
    transcript += chunks_from(CERT, offset)
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT
    assert result.caps.extended is True


@pytest.mark.parametrize("caps", [ReaderCaps(extended=False), ReaderCaps()])
@pytest.mark.parametrize("sw", ["9000", "6282"])
def test_small_file_in_one_short_chunk(sw: str, caps: ReaderCaps) -> None:
    cert = bytes.fromhex("3081C0") + bytes(0xC0)  # 195 bytes, the EF ends there
    transcript = [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), (CERT_SHORT_SFI, hx(cert) + sw)]
    result = drive(read_auth_certificate(caps), transcript)
    assert result.certificate == cert
    assert result.apdus == 3


def test_stingy_card_is_read_from_where_each_chunk_ended() -> None:
    # 9000 with fewer bytes than asked, every time: each read starts where the last one stopped.
    steps = [(CERT_SHORT_SFI, hx(CERT[:200]) + "9000")]
    offset = 200
    while offset < len(CERT):
        want = min(256, len(CERT) - offset)
        got = min(want, 200)
        steps.append((f"00B0{offset:04X}{want % 256:02X}", hx(CERT[offset : offset + got]) + "9000"))
        offset += got
    result = drive(
        read_auth_certificate(ReaderCaps(extended=False)),
        [(SELECT_JPKI, "9000"), (TOKEN_SFI, TOKEN + "9000"), *steps],
    )
    assert result.certificate == CERT


def test_6cxx_names_the_length_to_ask_for() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, hx(CERT[:256]) + "9000"),
        ("00B0010000", "6C80"),
        ("00B0010080", hx(CERT[256:384]) + "9000"),
        *chunks_from(CERT, 384),
    ]
    assert drive(read_auth_certificate(ReaderCaps(extended=False)), transcript).certificate == CERT


def test_61xx_is_followed_with_get_response() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN[:32] + "6110"),
        ("00C0000010", TOKEN[32:] + "9000"),
        (CERT_SHORT_SFI, hx(EF_000A[:128]) + "6180"),
        ("00C0000080", hx(EF_000A[128:256]) + "9000"),
        (rest_ext(256, len(CERT) - 256), hx(CERT[256:1024]) + "6100"),
        ("00C0000000", hx(CERT[1024:1280]) + "6118"),
        ("00C0000018", hx(CERT[1280:1304]) + "9000"),
    ]
    result = drive(read_auth_certificate(), transcript)
    assert result.certificate == CERT
    assert result.card_type is CardType.MY_NUMBER_CARD
    assert result.apdus == 8


@pytest.mark.parametrize(
    ("head", "message"),
    [("FFFFFFFF", "erased"), ("04820514", "not a DER SEQUENCE"), ("3084", "too long")],
)
def test_certificate_ef_without_a_certificate(head: str, message: str) -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, head + "FF" * 252 + "9000"),
    ]
    with pytest.raises(MalformedResponse, match=message):
        drive(read_auth_certificate(ReaderCaps(extended=False)), transcript)


@pytest.mark.parametrize("sw", ["6982", "6700", "6F00"])
def test_token_ef_refusal_is_typed(sw: str) -> None:
    with pytest.raises(StatusWordError):
        drive(read_auth_certificate(), [(SELECT_JPKI, "9000"), (TOKEN_SFI, sw)])


# -- properties: whatever the card answers, the read ends in a result or a CardError, boundedly ----------

SWS = [
    0x9000, 0x6282, 0x6B00, 0x6700, 0x6A81, 0x6A82, 0x6A86, 0x6986, 0x6C10, 0x6C00, 0x6982, 0x6D00,
    0x6100, 0x6104, 0x6E00, 0x6881, 0x63C0,
]  # fmt: skip


def der_prefixed(data: bytes) -> bytes:
    return b"\x30\x82" + len(data).to_bytes(2, "big") + data


responses = st.one_of(
    st.binary(max_size=300),  # unstructured
    st.tuples(
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(der_prefixed),
            st.binary(max_size=40).map(lambda b: b"\x30\x82\x05\x00" + b),  # a header that lies
        ),
        st.one_of(st.sampled_from(SWS), st.integers(0, 0xFFFF)),
    ).map(lambda t: t[0] + t[1].to_bytes(2, "big")),
)

CAPS = [
    ReaderCaps(),
    ReaderCaps(False, False),
    ReaderCaps(True, True),
    ReaderCaps(True, False, length_hint=1200),
    ReaderCaps(None, True, length_hint=40),
]


def assert_harmless(command: bytes) -> None:
    """Only SELECT of the JPKI AP or an EF, READ BINARY and GET RESPONSE: never VERIFY, never another AP."""
    cmd = CommandAPDU.decode(command)
    assert cmd.cla == 0x00
    assert cmd.ins in (0xA4, 0xB0, 0xC0)
    if cmd.ins == 0xA4:
        assert (cmd.p1, cmd.data) == (0x04, AID_JPKI) or cmd.p1 == 0x02


@given(st.lists(responses, min_size=1, max_size=MAX_APDUS + 5), st.sampled_from(CAPS))
def test_random_responses_end_in_card_error(answers: list[bytes], caps: ReaderCaps) -> None:
    session = read_auth_certificate(caps)
    sent = 0
    try:
        command = session.send(None)  # type: ignore[arg-type]
        sent = 1
        # Scripted answers first, then "file ended" for ever: the session must stop by itself.
        for answer in itertools.chain(answers, itertools.repeat(b"\x6b\x00")):
            assert_harmless(command)
            command = session.send(answer)
            sent += 1
            assert sent <= MAX_APDUS
    except StopIteration as done:
        result = done.value
        assert isinstance(result, JpkiRead)
        assert result.apdus == sent <= MAX_APDUS
        assert len(result.certificate) == certificate_length(result.certificate)
    except CardError:
        pass


@given(
    st.binary(min_size=300, max_size=3000),
    st.integers(0, 600),
    st.integers(1, 256),
    st.integers(64, 256),
    st.sampled_from(CAPS),
    st.booleans(),
)
def test_any_honest_card_is_read_exactly(
    body: bytes, filler: int, first_chunk: int, max_chunk: int, caps: ReaderCaps, extended_ok: bool
) -> None:
    """A card model that gives at most `first_chunk`, then `max_chunk` bytes per short read: the read
    returns the exact object, within the goals when the reader gives full chunks, and carries no filler
    over the air unless a length hint asked for it."""
    cert = der_prefixed(body)
    ef = cert + b"\xff" * filler
    current = False  # is EF 000A the current EF
    short_reads = 0
    cert_bytes = 0  # bytes of EF 000A that crossed the air
    tried_extended = False
    session = read_auth_certificate(caps)
    command = next(session)
    try:
        while True:
            cmd = CommandAPDU.decode(command)
            if cmd.ins == 0xA4:
                current = cmd.data == EF_AUTH_CERT.to_bytes(2, "big")
                answer = b"\x90\x00"
            elif cmd.p1 == 0x86:
                assert cmd.le is not None
                answer = TOKEN_BYTES[: cmd.le] + b"\x90\x00"
            elif cmd.is_extended and not extended_ok:
                tried_extended = True
                answer = b"\x67\x00"
            else:
                assert current or cmd.p1 == 0x8A
                tried_extended |= cmd.is_extended
                current = True
                offset = cmd.p2 if cmd.p1 & 0x80 else (cmd.p1 << 8) | cmd.p2
                assert cmd.le is not None
                n = cmd.le
                if not cmd.is_extended:
                    n = min(n, first_chunk if short_reads == 0 else max_chunk)
                    short_reads += 1
                data = ef[offset : offset + n]
                cert_bytes += len(data)
                answer = data + (b"\x90\x00" if offset < len(ef) else b"\x6b\x00")
            command = session.send(answer)
    except StopIteration as done:
        result: JpkiRead = done.value
    assert result.certificate == cert
    sfi = caps.sfi is not False
    assert result.card_type is (CardType.MY_NUMBER_CARD if sfi else CardType.NOT_READ)
    assert result.caps.extended is (extended_ok if tried_extended else caps.extended)
    assert result.caps.length_hint == len(cert)
    hint = caps.length_hint
    assert cert_bytes <= (len(cert) if hint is None else max(len(cert), hint + HINT_MARGIN))
    if result.caps.extended and tried_extended and extended_ok and hint is None and first_chunk >= 4:
        assert result.apdus == 4  # SELECT, token or SELECT EF, 256 bytes, the rest
    if first_chunk == max_chunk == 256 and caps.extended is False:
        assert result.apdus == 2 + -(-len(cert) // 256)


def test_first_answer_shorter_than_the_der_header() -> None:
    transcript = [
        (SELECT_JPKI, "9000"),
        (TOKEN_SFI, TOKEN + "9000"),
        (CERT_SHORT_SFI, "309000"),
        ("00B0000100", "829000"),
        ("00B0000200", hx(CERT[2:258]) + "9000"),
        *[
            (f"00B0{o:04X}{min(256, len(CERT) - o) % 256:02X}", hx(CERT[o : o + 256]) + "9000")
            for o in range(258, len(CERT), 256)
        ],
    ]
    assert drive(read_auth_certificate(ReaderCaps(extended=False)), transcript).certificate == CERT


# -- against the independent virtual card (mynabox_testkit), through its in-memory transport -------------

CARD_ID = "H1-CARD-0001"


@pytest.mark.parametrize("truncate", [None, 6])
@pytest.mark.parametrize("extended", [True, False])
def test_reads_the_virtual_card(extended: bool, truncate: int | None) -> None:
    card = VirtualMyNumberCard(CARD_ID, extended=extended, faults=Faults(truncate=truncate))
    transport = FakeCardTransport(card)
    cert = testca.auth_certificate(CARD_ID)
    first = run(read_auth_certificate(), transport)
    assert first.certificate == cert
    assert first.card_type is CardType.MY_NUMBER_CARD
    assert first.caps.extended is extended
    assert first.caps.sfi is True
    again = run(read_auth_certificate(first.caps), transport)
    assert again.certificate == cert
    if truncate is None:
        assert first.apdus == (4 if extended else 3 + -(-len(cert) // 256))
        assert again.apdus == (3 if extended else 2 + -(-len(cert) // 256))
    for command in card.log:
        assert_harmless(command)
    trust = TrustStore.jlis(extra_roots=[testca.test_ca_pem()])
    check = check_certificate(cert, trust, now=datetime.now(UTC), clock_synced=True)
    assert (check.status, check.issuer_generation, check.is_auth_certificate) == (CertStatus.OK, "test", True)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(non_jpki=True), NotMyNumberCard),
        (Faults(lying_der_length=0x1400), MalformedResponse),
        (Faults(wrong_sw=(0xB0, 0x6982)), SecurityStatusNotSatisfied),
    ],
)
def test_virtual_card_faults_are_typed(faults: Faults, error: type[CardError]) -> None:
    for extended in (True, False):
        with pytest.raises(error):
            run(
                read_auth_certificate(),
                FakeCardTransport(VirtualMyNumberCard(CARD_ID, extended=extended, faults=faults)),
            )


def test_virtual_card_answering_more_than_asked() -> None:
    # More bytes than Le is malformed, on the first tap's 256-byte read and on a hinted extended read alike.
    # (Before, the first tap's extended read of the whole EF let the junk land in the filler unnoticed.)
    junk = Faults(oversize=3)
    for extended in (True, False):
        with pytest.raises(MalformedResponse, match="returned for Le"):
            run(
                read_auth_certificate(),
                FakeCardTransport(VirtualMyNumberCard(CARD_ID, extended=extended, faults=junk)),
            )
    hinted = ReaderCaps(True, True, length_hint=len(testca.auth_certificate(CARD_ID)))
    with pytest.raises(MalformedResponse, match="returned for Le"):
        run(read_auth_certificate(hinted), FakeCardTransport(VirtualMyNumberCard(CARD_ID, faults=junk)))


@pytest.mark.parametrize("ef_size", [None, 2100, 8192])
@pytest.mark.parametrize("sfi_refused", [None, 0x6A86, 0x6B00])
def test_virtual_card_first_and_later_taps_carry_no_filler(
    ef_size: int | None, sfi_refused: int | None
) -> None:
    """On a padded EF and on a card that refuses SFI, the first tap is the minimal exchange (SELECT AP, the
    4-byte header, the rest) plus the token read by SFI (or the refused probe); later taps less."""
    cert = testca.auth_certificate(CARD_ID)
    faults = Faults(cert_ef_size=ef_size, sfi_refused=sfi_refused)
    minimal = 17 + (9 if sfi_refused else 0) + (5 + 4 + 2) + (7 + len(cert) - 4 + 2)  # bytes both ways
    extra = 7 if sfi_refused else 5 + 32 + 2  # the refused SFI probe, or the token
    card = VirtualMyNumberCard(CARD_ID, faults=faults)
    first = run(read_auth_certificate(), FakeCardTransport(card))
    assert first.certificate == cert
    assert first.apdus == (5 if sfi_refused else 4) and card.air_bytes == minimal + extra
    card = VirtualMyNumberCard(CARD_ID, faults=faults)
    again = run(read_auth_certificate(first.caps), FakeCardTransport(card))
    assert again.certificate == cert and again.apdus == 3
    assert card.air_bytes <= minimal + extra + HINT_MARGIN - (5 + 2)  # no header read, ≤ margin of filler
