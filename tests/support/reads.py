"""The record of a read as the card worker would hold it, for tests that start at the delivery."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from mynabox.app.cardread import ReadRecord
from mynabox.card.certcheck import CertCheck
from mynabox.card.jpki import CardType, JpkiRead, ReaderCaps


def read_record(certificate: bytes, card_hash: str, check: CertCheck, read_at: datetime) -> ReadRecord:
    """A My Number Card read in 4 APDUs on the usual path (what a tap on a good reader gives)."""
    jpki = JpkiRead(CardType.MY_NUMBER_CARD, certificate, 4, ReaderCaps(True, True, len(certificate)))
    return ReadRecord(jpki, check, card_hash, "test reader", read_at, 0.0)


def with_certificate(record: ReadRecord, certificate: bytes) -> ReadRecord:
    """The same read with another certificate (e.g. the largest the session accepts)."""
    return replace(record, jpki=replace(record.jpki, certificate=certificate))
