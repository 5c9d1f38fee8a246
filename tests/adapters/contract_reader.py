"""The contract every card transport passes, whatever carries the APDUs (after nfcpy's base_clf tests).

A transport's test module subclasses `ReaderContract` and provides one fixture, `present`: a function
that puts a `VirtualMyNumberCard` in the field and returns the connected `Transport` (raising what the
transport raises for a card it cannot connect to). The same tests then run over the in-memory fake and
the real PC/SC stack, so the fake cannot drift from what pcscd + vpcd really do.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mynabox.card import jpki
from mynabox.card.errors import (
    CardError,
    CardRemoved,
    CardUnresponsive,
    MalformedResponse,
    NotMyNumberCard,
    SecurityStatusNotSatisfied,
)
from mynabox.card.jpki import CardType, JpkiRead, ReaderCaps, read_auth_certificate
from mynabox.card.session import run
from mynabox.card.transport import Transport
from mynabox_testkit import testca
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard

CARD = "CONTRACTCARD00000000001"
UNKNOWN = ReaderCaps()  # a reader nothing is known about yet
Present = Callable[[VirtualMyNumberCard], Transport]
VERIFY = 0x20
SELECT_BY_AID = bytes.fromhex("00A404")


def full_read_apdus(extended: bool, caps: ReaderCaps = UNKNOWN) -> int:
    """SELECT + token + 256 bytes + exactly the rest (one extended read of the length once it is known);
    or SELECT + token (+ the refused extended try unless the caps already know) + ceil(len/256) reads."""
    if extended:
        return 3 if caps.length_hint is not None else 4
    refused_try = 0 if caps.extended is False else 1
    return 2 + refused_try + -(-len(testca.auth_certificate(CARD)) // 256)


class NotAnnounced(TimeoutError):
    """`present` waited and no card was handed out: what a card that gives no ATR looks like on PC/SC."""


class ReaderContract:
    def read(self, present: Present, card: VirtualMyNumberCard, caps: ReaderCaps = UNKNOWN) -> JpkiRead:
        return run(read_auth_certificate(caps), present(card))

    @pytest.mark.parametrize("extended", [True, False])
    def test_reads_the_certificate_in_either_le_mode(self, present: Present, extended: bool) -> None:
        card = VirtualMyNumberCard(CARD, extended=extended)
        result = self.read(present, card)
        assert result.certificate == testca.auth_certificate(CARD)
        assert result.card_type is CardType.MY_NUMBER_CARD
        assert result.caps.extended is extended
        assert result.apdus == card.apdu_count == full_read_apdus(extended)

    def test_known_caps_skip_the_refused_extended_try(self, present: Present) -> None:
        first = self.read(present, VirtualMyNumberCard(CARD, extended=False))
        card = VirtualMyNumberCard(CARD, extended=False)
        again = self.read(present, card, first.caps)
        assert again.certificate == first.certificate
        assert again.apdus == card.apdu_count == full_read_apdus(False, first.caps)

    def test_not_a_my_number_card(self, present: Present) -> None:
        card = VirtualMyNumberCard(CARD, faults=Faults(non_jpki=True))
        with pytest.raises(NotMyNumberCard):
            self.read(present, card)
        assert card.apdu_count == 1  # the SELECT by AID is the whole detection

    @pytest.mark.parametrize("extended", [True, False])
    def test_pull_at_every_apdu_boundary(self, present: Present, extended: bool) -> None:
        n = full_read_apdus(extended)
        for answered in range(1, n):
            card = VirtualMyNumberCard(CARD, extended=extended, faults=Faults(remove_after=answered))
            with pytest.raises(CardRemoved):
                self.read(present, card)
            assert card.gone and card.apdu_count == answered  # nothing reached the card after it left
        # Pulled right after the last answer: the read was already complete.
        last = VirtualMyNumberCard(CARD, extended=extended, faults=Faults(remove_after=n))
        assert self.read(present, last).certificate == testca.auth_certificate(CARD)
        # And the next tap of a good card reads fine.
        assert self.read(present, VirtualMyNumberCard(CARD)).apdus == 4

    @pytest.mark.parametrize(
        ("faults", "error"),
        [
            (Faults(lying_der_length=0x1400), MalformedResponse),
            (Faults(oversize=4), MalformedResponse),
            (Faults(wrong_sw=(0xB0, 0x6982)), SecurityStatusNotSatisfied),
        ],
        ids=["lying-der-length", "oversize", "wrong-sw"],
    )
    def test_hostile_cards_give_typed_errors(
        self, present: Present, faults: Faults, error: type[CardError]
    ) -> None:
        with pytest.raises(error):
            self.read(present, VirtualMyNumberCard(CARD, extended=False, faults=faults))

    def test_truncated_answers_are_read_on_to_the_exact_certificate(self, present: Present) -> None:
        card = VirtualMyNumberCard(CARD, faults=Faults(truncate=6))
        result = self.read(present, card)
        assert result.certificate == testca.auth_certificate(CARD)
        assert result.apdus <= jpki.MAX_APDUS

    def test_mute_card_is_unresponsive_or_never_announced(self, present: Present) -> None:
        # In memory the mute card fails the first transmit. Over vpcd it gives no ATR, and pcscd then
        # reports the slot empty (measured: state EMPTY while it is "present"), so the box sees no card
        # and a wait ends in its timeout: either way a typed outcome, never a hang or a crash.
        with pytest.raises((CardUnresponsive, NotAnnounced)):
            self.read(present, VirtualMyNumberCard(CARD, faults=Faults(mute=True)))

    @pytest.mark.parametrize("sfi_refused", [None, 0x6A86, 0x6B00], ids=["sfi", "no-sfi-6a86", "no-sfi-6b00"])
    def test_first_and_later_taps_on_a_padded_ef_carry_no_filler(
        self, present: Present, sfi_refused: int | None
    ) -> None:
        """EF 000A is 8 KB of which the certificate is ~1.2: the first tap asks for 256 bytes and then exactly
        the rest (before: the whole EF in one extended READ), the next for the length it learned + margin."""
        cert = testca.auth_certificate(CARD)
        faults = Faults(cert_ef_size=8192, sfi_refused=sfi_refused)
        card = VirtualMyNumberCard(CARD, faults=faults)
        first = self.read(present, card)
        assert first.certificate == cert and first.caps.sfi is (sfi_refused is None)
        assert first.card_type is (CardType.MY_NUMBER_CARD if sfi_refused is None else CardType.NOT_READ)
        # Command + response bytes of the minimal exchange: SELECT AP (+ SELECT EF), 4-byte header, the rest.
        minimal = 17 + (9 if sfi_refused else 0) + 11 + (9 + len(cert) - 4)
        assert card.air_bytes == minimal + (7 if sfi_refused else 39)  # the refused SFI probe, or the token
        card = VirtualMyNumberCard(CARD, faults=faults)
        again = self.read(present, card, first.caps)
        assert again.certificate == cert and again.apdus == card.apdu_count == 3
        assert card.air_bytes <= minimal + (0 if sfi_refused else 39) + jpki.HINT_MARGIN

    def test_never_verifies_nor_selects_another_ap(self, present: Present) -> None:
        card = VirtualMyNumberCard(CARD)
        self.read(present, card)
        assert all(command[1] != VERIFY for command in card.log)
        selects = [command for command in card.log if command.startswith(SELECT_BY_AID)]
        assert len(selects) == 1 and jpki.AID_JPKI in selects[0]
        assert not any(aid in c for c in card.log for aid in (jpki.AID_TEXT, jpki.AID_VISUAL))
