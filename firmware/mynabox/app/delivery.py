"""After a read and a consent: look the summary up, seal it, queue it, write the audit record.

Runs on a worker thread of the daemon (the lookup is network I/O). The summary exists in plaintext only in
this call's locals: it leaves sealed (into the outbox) and the caller gets flags and counts, no data.
When the lookup fails the box still sends a sealed card record so the receiving side can retry the lookup.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from mynabox.app.cardread import ReadRecord
from mynabox.app.ports import AuditPort, OutboxPort
from mynabox.payload.audit import AuditRecord, published_body
from mynabox.payload.bodies import card_record_body, read_body, summary_body
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import MessageTooLarge, Sealed, Sealer
from mynabox.payload.topics import topic
from mynabox.record import record
from mynabox.summary.flags import Flag, derive_flags
from mynabox.summary.port import Found, NotRegistered, SummaryLookup, Unavailable
from mynabox.vocab import ConsentMode, Outcome

log = logging.getLogger(__name__)


@record
class DeliveryResult:
    outcome: Outcome
    flags: tuple[Flag, ...]  # shown on the OLED: the ones the summary message carries
    message_id: str
    queued: int
    lookup_ms: float = 0.0


@record
class Identity:
    device_id: str
    unit_id: str | None = None
    crew_id: str | None = None


class Delivery:
    def __init__(
        self,
        identity: Identity,
        *,
        lookup: SummaryLookup,
        sealer: Sealer,
        outbox: OutboxPort,
        audit: AuditPort,
        notify: Callable[[], None],
        clock: Callable[[], datetime],
        clock_synced: Callable[[], bool],
    ) -> None:
        self._id = identity
        self._lookup = lookup
        self._sealer = sealer
        self._outbox = outbox
        self._audit = audit
        self._notify = notify
        self._clock = clock
        self._synced = clock_synced
        self._audit_lock = threading.Lock()  # the chain must be appended in order

    def deliver(self, read: ReadRecord, consent: ConsentMode) -> DeliveryResult:
        started = time.monotonic()
        certificate = read.jpki.certificate
        result = self._lookup.lookup(certificate)
        lookup_ms = (time.monotonic() - started) * 1000
        now = self._clock()
        meta = read_body(read.card_hash, read.jpki.card_type, read.check, read.read_at, consent)
        flags: tuple[Flag, ...] = ()
        sealed: Sealed | None = None
        if isinstance(result, Found):
            # One derivation: the flags the OLED shows are the ones the message carries, with their items.
            shown = derive_flags(result.summary, today=now.date())
            body: dict[str, object] = summary_body(result.summary, meta, shown)
            try:
                sealed = self._queue("summary", Kind.SUMMARY, body, now)  # rolled back if too large
                flags = shown
                outcome = Outcome.DELIVERED_SUMMARY
            except MessageTooLarge as err:
                # Sent, it would be refused by the receiver after the broker's PUBACK: the read would end
                # with nothing delivered. The card record lets the hospital repeat the lookup.
                log.warning("summary too large to send (%s): sending the card record", err)
                reason, outcome = "summary-too-large", Outcome.CARD_RECORD
        else:
            reason = "not-registered" if isinstance(result, NotRegistered) else "lookup-unavailable"
            if isinstance(result, Unavailable):
                log.warning("summary lookup unavailable: %s", result.reason)
            outcome = Outcome.NOT_REGISTERED if isinstance(result, NotRegistered) else Outcome.CARD_RECORD
        if sealed is None:
            # The receiving side needs the certificate to repeat the lookup itself.
            body = card_record_body(certificate, reason, meta)
            sealed = self._queue("summary", Kind.CARD_RECORD, body, now)
        del body, result, certificate  # nothing patient-related outlives this call in plaintext
        items = tuple(f.code.value for f in flags)
        self.record(outcome, consent, read.card_hash, items, message_id=sealed.message_id)
        return DeliveryResult(outcome, flags, sealed.message_id, self._outbox.depth(), lookup_ms)

    def record(
        self,
        outcome: Outcome,
        consent: ConsentMode,
        card_hash: str | None,
        items: tuple[str, ...] = (),
        *,
        message_id: str | None = None,
    ) -> None:
        """Append one audit record to the chain on disk and queue it, sealed, for the audit topic.

        ``items`` (the flags shown) go only into the sealed message: the local chain keeps no health data."""
        now = self._clock()
        record = AuditRecord(
            time=now,
            device_id=self._id.device_id,
            unit_id=self._id.unit_id,
            crew_id=self._id.crew_id,
            consent=consent,
            outcome=outcome,
            card_hash=card_hash,
            clock_synced=self._synced(),
            message_id=message_id,
        )
        with self._audit_lock:
            chained = self._audit.append(record)
            self._queue("audit", Kind.AUDIT, published_body(chained, items), now)
        self._notify()

    def _queue(self, leaf: str, kind: Kind, body: Mapping[str, object], now: datetime) -> Sealed:
        """Sealed with the outbox's next sequence number, in the transaction that stores it."""
        synced = self._synced()

        def seal(seq: int) -> Sealed:
            return self._sealer.seal(kind, body, now=now, clock_synced=synced, seq=seq)

        return self._outbox.put_sealed(topic(self._id.device_id, leaf), seal, now=now)

    def purge(self, retention_s: float) -> int:
        """Drop undelivered messages past retention, each with an audit record saying so."""
        purged = self._outbox.purge(timedelta(seconds=retention_s), self._clock())
        for message_id in purged:
            self.record(Outcome.PURGED, ConsentMode.NONE, None, message_id=message_id)
        return len(purged)
