"""The virtual My Number Card against the checklist of card-protocol.md §1.7 (hex transcripts)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mynabox.card.errors import CardRemoved, CardUnresponsive
from mynabox_testkit import testca
from mynabox_testkit.mynacard import CardGone, Faults, VirtualMyNumberCard
from support.fakecard import FakeCardTransport

CARD = "TESTCARD0000000000000001"
SELECT_JPKI = "00A4040C0AD392F000260100000001"


def tx(card: VirtualMyNumberCard, hex_: str) -> str:
    response = card.process(bytes.fromhex(hex_))
    assert response is not None
    return response.hex().upper()


@pytest.fixture
def card() -> VirtualMyNumberCard:
    return VirtualMyNumberCard(CARD)


def test_select_aps_and_efs(card: VirtualMyNumberCard) -> None:
    assert tx(card, "00A4020C02000A") == "6986"  # EF before any DF
    assert tx(card, SELECT_JPKI) == "9000"
    assert tx(card, "00A4040C0AD3921000310001010408") == "9000"  # text AP exists
    assert tx(card, "00A4040C07A0000000030000") == "6A82"  # someone else's AID
    assert tx(card, SELECT_JPKI) == "9000"
    assert tx(card, "00A4020C020099") == "6A82"
    assert tx(card, "00A4020C02000A") == "9000"
    assert tx(card, "00A40000023F00") == "6A86"  # MF by id after reset


def test_token_and_certificate_status_efs(card: VirtualMyNumberCard) -> None:
    tx(card, SELECT_JPKI)
    token = bytes.fromhex(tx(card, "00B0860020"))
    assert token[:32] == b"JPKIAPICCTOKEN2".ljust(32, b" ") and token[-2:] == b"\x90\x00"
    assert tx(card, "00B0880000") == "8F8F009000"  # fewer bytes than Le at the end of the EF


def test_auth_certificate_with_filler_and_eof(card: VirtualMyNumberCard) -> None:
    cert = testca.auth_certificate(CARD)
    tx(card, SELECT_JPKI)
    whole = bytes.fromhex(tx(card, "00B08A00000000"))[:-2]  # one extended read of the whole EF
    assert whole[: len(cert)] == cert
    assert set(whole[len(cert) :]) == {0xFF} and len(whole) % 256 == 0
    assert tx(card, f"00B0{len(whole):04X}10") == "6B00"
    assert tx(card, "00B0000004") == cert[:4].hex().upper() + "9000"  # the SFI read made 000A current


def test_extended_switched_off_gives_6700() -> None:
    card = VirtualMyNumberCard(CARD, extended=False)
    tx(card, SELECT_JPKI)
    assert tx(card, "00B08A00000000") == "6700"
    assert tx(card, "00B08A0000").endswith("9000")


def test_sign_certificate_needs_the_password_and_counters(card: VirtualMyNumberCard) -> None:
    tx(card, SELECT_JPKI)
    assert tx(card, "00B0810000") == "6982"
    tx(card, "00A4020C02001B")
    assert tx(card, "00200080") == "63C5"  # a query costs no try
    assert tx(card, "0020008003414243") == "63C4"
    assert tx(card, "00200080") == "63C4"
    assert tx(card, "0020008006" + b"ABC123".hex()) == "9000"
    assert tx(card, "00B0810000").endswith("9000")


def test_auth_pin_blocks(card: VirtualMyNumberCard) -> None:
    tx(card, SELECT_JPKI)
    assert tx(card, "0020009804" + b"0000".hex()) == "63C2"  # P2 = 80|SFI form
    assert tx(card, "0020009804" + b"0000".hex()) == "63C1"
    assert tx(card, "0020009804" + b"0000".hex()) == "63C0"
    assert tx(card, "0020009804" + b"1234".hex()) == "6984"
    assert tx(card, "00200098") == "6984"


def test_signature_after_verify_verifies_with_the_certificate(card: VirtualMyNumberCard) -> None:
    digest = hashlib.sha256(b"challenge").digest()
    digest_info = bytes.fromhex("3031300D060960864801650304020105000420") + digest
    tx(card, SELECT_JPKI)
    tx(card, "00A4020C020017")
    assert tx(card, f"802A0080{len(digest_info):02X}{digest_info.hex()}00") == "6982"
    assert tx(card, "0020009804" + b"1234".hex()) == "9000"
    tx(card, "00A4020C020017")
    response = bytes.fromhex(tx(card, f"802A0080{len(digest_info):02X}{digest_info.hex()}00"))
    assert response[-2:] == b"\x90\x00" and len(response) == 258
    public = x509.load_der_x509_certificate(testca.auth_certificate(CARD)).public_key()
    public.verify(response[:-2], b"challenge", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00CA5F5100", "6D00"),
        ("A0A4040C0AD392F000260100000001", "6E00"),
        ("01A4040C0AD392F000260100000001", "6881"),
        ("0CA4040C0AD392F000260100000001", "6882"),
        ("00B0", "6700"),
    ],
)
def test_refusals(card: VirtualMyNumberCard, apdu: str, sw: str) -> None:
    assert tx(card, apdu) == sw


def test_text_ap_data_is_guarded(card: VirtualMyNumberCard) -> None:
    tx(card, "00A4040C0AD3921000310001010408")
    tx(card, "00A4020C020001")
    assert tx(card, "00B0000000") == "6982"


def test_certificates_are_deterministic_and_jpki_shaped() -> None:
    der = testca.auth_certificate(CARD)
    assert der == testca.auth_certificate(CARD)
    cert = x509.load_der_x509_certificate(der)
    assert [a.oid.dotted_string for a in cert.subject] == ["2.5.4.6", "2.5.4.3"]  # C and CN only
    assert "OU=JPKI for user authentication" in cert.issuer.rfc4514_string()
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    root = x509.load_pem_x509_certificate(testca.test_ca_pem())
    cert.verify_directly_issued_by(root)
    assert testca.auth_certificate("OTHER") != der


def test_faults_through_the_fake_transport() -> None:
    gone = FakeCardTransport(VirtualMyNumberCard(CARD, faults=Faults(remove_after=1)))
    assert gone.transmit(bytes.fromhex(SELECT_JPKI)) == b"\x90\x00"
    with pytest.raises(CardRemoved):
        gone.transmit(bytes.fromhex("00B0860020"))
    with pytest.raises(CardUnresponsive):
        FakeCardTransport(VirtualMyNumberCard(CARD, faults=Faults(mute=True))).transmit(
            bytes.fromhex(SELECT_JPKI)
        )
    assert tx(VirtualMyNumberCard(CARD, faults=Faults(non_jpki=True)), SELECT_JPKI) == "6A82"
    assert tx(VirtualMyNumberCard(CARD, faults=Faults(wrong_sw=(0xA4, 0x6F00))), SELECT_JPKI) == "6F00"
    lying = VirtualMyNumberCard(CARD, faults=Faults(lying_der_length=0x1000))
    tx(lying, SELECT_JPKI)
    assert tx(lying, "00B08A0004") == "308210009000"
    with pytest.raises(CardGone):
        VirtualMyNumberCard(CARD, faults=Faults(remove_after=0)).process(bytes.fromhex(SELECT_JPKI))


def test_latency_model() -> None:
    card = VirtualMyNumberCard(CARD, faults=Faults(latency_s=0.002, baud=424))
    assert card.delay_for(b"\x00" * 5, b"\x00" * 1001) == pytest.approx(0.002 + 1006 * 8 / 424_000)


def test_select_with_p2_00_and_truncate_oversize_faults() -> None:
    card = VirtualMyNumberCard(CARD)
    assert tx(card, "00A404000AD392F000260100000001") == "9000"  # P2=00 (FCI requested): selected, no FCI
    cert = testca.auth_certificate(CARD)
    short = VirtualMyNumberCard(CARD, faults=Faults(truncate=6))
    tx(short, SELECT_JPKI)
    assert tx(short, "00B08A0010") == cert[:10].hex().upper() + "9000"
    junk = VirtualMyNumberCard(CARD, faults=Faults(oversize=3))
    tx(junk, SELECT_JPKI)
    assert tx(junk, "00B08A0004") == cert[:4].hex().upper() + "5A5A5A9000"
