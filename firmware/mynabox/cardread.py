"""One read of a presented card: the JPKI session, the advisory chain check, the keyed hash, timing.

Shared by the daemon's card worker and `mynabox read`. Raises the card path's typed errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mynabox.adapters.pcsc import PcscCard
from mynabox.card.certcheck import CertCheck, TrustStore, check_certificate
from mynabox.card.identity import card_key_hash
from mynabox.card.jpki import CardRead, ReaderCaps, read_auth_certificate
from mynabox.card.session import run


@dataclass(frozen=True, slots=True)
class CardReport:
    read: CardRead = field(repr=False)
    check: CertCheck
    card_hash: str
    reader: str
    read_at: datetime
    ms: float

    @property
    def certificate(self) -> bytes:
        return self.read.certificate


class CapsMemory:
    """What worked per reader (extended Le, SFI reads), so the next tap skips what failed."""

    def __init__(self, default: ReaderCaps | None = None) -> None:
        self._default = default or ReaderCaps()
        self._caps: dict[str, ReaderCaps] = {}

    def get(self, reader: str) -> ReaderCaps:
        return self._caps.get(reader, self._default)

    def remember(self, reader: str, caps: ReaderCaps) -> None:
        self._caps[reader] = caps


def read_card(
    card: PcscCard, caps: CapsMemory, *, trust: TrustStore, hash_key: bytes, clock_synced: bool
) -> CardReport:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    result = run(read_auth_certificate(caps.get(card.reader_name)), card)
    ms = (time.perf_counter() - started) * 1000
    caps.remember(card.reader_name, result.caps)
    check = check_certificate(result.certificate, trust, now=started_at, clock_synced=clock_synced)
    return CardReport(
        result, check, card_key_hash(result.certificate, hash_key), card.reader_name, started_at, ms
    )
