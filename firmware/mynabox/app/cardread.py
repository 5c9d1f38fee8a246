"""One read of a presented card: the JPKI session, the advisory chain check, the keyed hash, timing.

Shared by the daemon's card worker, `mynabox read` and the card benchmark. Outside the pure core because
it drives the PC/SC adapter. Raises the card path's typed errors (`mynabox.card.errors`). The record keeps
the certificate (the summary lookup needs it) out of its repr; callers show only `card_hash`.
"""

from __future__ import annotations

import time
from dataclasses import field
from datetime import UTC, datetime

from mynabox.app.ports import PresentedCard, Reader
from mynabox.card.certcheck import CertCheck, TrustStore, check_certificate
from mynabox.card.identity import card_key_hash
from mynabox.card.jpki import JpkiRead, ReaderCaps, read_auth_certificate
from mynabox.card.session import run
from mynabox.record import record

# How long the read of a presented card may take: a tap takes about 0.1 s, a marginal card a few frame wait
# times (FWI 13: 2.5 s each, card-protocol.md §1.1). A card still silent then is given up (`ReadTimeout`).
READ_LIMIT_S = 5.0


@record
class ReadRecord:
    """The one record of a read, from the card to the delivery. The card layer's `JpkiRead` (certificate,
    card type, APDUs, caps) is kept as it came; `read_card` adds the check, the keyed hash and the time;
    the card worker adds when the card came and the read ended (`dataclasses.replace`). The certificate is
    personal data: it is never printed (`jpki` is out of the repr) and the record is forgotten once
    delivered (`app.holding`)."""

    jpki: JpkiRead = field(repr=False)
    check: CertCheck
    card_hash: str
    reader: str
    read_at: datetime
    ms: float  # the card session, reader to certificate
    present_at: float = 0.0  # time.monotonic() when the card came, for the read's timing line
    read_done_at: float = 0.0  # time.monotonic() when the read ended


class CapsMemory:
    """What worked per reader (extended Le, SFI reads, certificate length), so the next tap skips what
    failed. Kept per reader name: the limit is usually the reader's (extended APDUs), not the card's."""

    def __init__(self, default: ReaderCaps | None = None) -> None:
        self._default = default or ReaderCaps()
        self._caps: dict[str, ReaderCaps] = {}

    def get(self, reader: str) -> ReaderCaps:
        return self._caps.get(reader, self._default)

    def remember(self, reader: str, caps: ReaderCaps) -> None:
        self._caps[reader] = caps


def read_card(
    card: PresentedCard, caps: CapsMemory, *, trust: TrustStore, hash_key: bytes, clock_synced: bool
) -> ReadRecord:
    """Run the JPKI session on a connected card, remember what the reader supports, check the certificate.

    Caps are remembered only after a complete read: a pulled card teaches nothing about the reader.
    """
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    result = run(read_auth_certificate(caps.get(card.reader_name)), card)
    ms = (time.perf_counter() - started) * 1000
    caps.remember(card.reader_name, result.caps)
    check = check_certificate(result.certificate, trust, now=started_at, clock_synced=clock_synced)
    return ReadRecord(
        result, check, card_key_hash(result.certificate, hash_key), card.reader_name, started_at, ms
    )


class JpkiReader:
    """Reads My Number Cards tapped on a reader (`PcscReader`), with the caps memory of its readers."""

    def __init__(
        self, pcsc: Reader, *, trust: TrustStore, hash_key: bytes, default_caps: ReaderCaps | None = None
    ) -> None:
        self.pcsc = pcsc
        self.caps = CapsMemory(default_caps)
        self._trust = trust
        self._key = hash_key

    def read_present(self, card: PresentedCard, *, clock_synced: bool) -> ReadRecord:
        return read_card(card, self.caps, trust=self._trust, hash_key=self._key, clock_synced=clock_synced)

    def read(
        self, *, timeout: float | None, clock_synced: bool, limit_s: float | None = READ_LIMIT_S
    ) -> ReadRecord | None:
        """Wait for the next tap and read it; None when no card came within `timeout` (or on cancel).

        The read itself ends within `limit_s` (None: no limit). Raises `ReaderGone`/`ServiceGone` (no
        reader or pcscd at the end of the wait), `CardUnresponsive` (a mute card; `ReadTimeout`: silent
        past `limit_s`), `CardRemoved` (pulled mid-read: hold it again), `NotMyNumberCard`, other
        `ProtocolError`s for cards answering out of spec. The card connection is always closed.
        """
        card = self.pcsc.wait_for_card(timeout)
        if card is None:
            return None
        try:
            card.deadline = None if limit_s is None else time.monotonic() + limit_s
            return self.read_present(card, clock_synced=clock_synced)
        finally:
            card.close()
