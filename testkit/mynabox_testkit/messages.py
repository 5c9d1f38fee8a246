"""Message bodies as a box sends them, for the test vectors, the devbox and the tests: built with the box's
own functions (``payload.bodies``, ``payload.audit``, ``summary.flags``), so they cannot drift from it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from mynabox.payload.audit import GENESIS, AuditRecord, chain, published_body
from mynabox.payload.bodies import card_record_body, summary_body
from mynabox.payload.envelope import Kind
from mynabox.payload.keys import Secret
from mynabox.summary.flags import derive_flags
from mynabox.vocab import ConsentMode, Outcome
from mynabox_testkit.patients import SyntheticPatient, summary_for

CARD_HASH = "0123456789abcdef"


def sample_read(read_at: datetime, *, card_hash: str = CARD_HASH) -> dict[str, object]:
    """A ``read`` as the box writes it: a My Number Card with a valid test certificate, oral consent."""
    return {
        "card_hash": card_hash,
        "card_type": "my-number-card",
        "certificate_check": {
            "status": "ok",
            "issuer_generation": "test",
            "not_before": (read_at - timedelta(days=365)).isoformat(),
            "not_after": (read_at + timedelta(days=4 * 365)).isoformat(),
            "clock_synced": True,
            "is_auth_certificate": True,
        },
        "read_at": read_at.isoformat(),
        "consent": ConsentMode.ORAL_CONSENT.value,
    }


def patient_body(
    p: SyntheticPatient, read_at: datetime, *, card_hash: str = CARD_HASH
) -> tuple[Kind, dict[str, object], tuple[str, ...]]:
    """What the box sends for this patient (a summary, or a card record when not registered) and the flag
    codes it shows."""
    read = sample_read(read_at, card_hash=card_hash)
    summary = summary_for(p, read_at.date())
    if summary is None:
        return Kind.CARD_RECORD, card_record_body(b"synthetic certificate", "not-registered", read), ()
    shown = derive_flags(summary, today=read_at.date())
    return Kind.SUMMARY, summary_body(summary, read, shown), tuple(f.code.value for f in shown)


def audit_body(
    device_id: str,
    *,
    time: datetime,
    message_id: str | None,
    shown: Iterable[str] = (),
    outcome: Outcome = Outcome.DELIVERED_SUMMARY,
    card_hash: str | None = CARD_HASH,
    prev: str = GENESIS,
    key: Secret[bytes] | None = None,
) -> dict[str, object]:
    """One chained audit record as published (``record``, ``prev``, ``hash``, ``shown``)."""
    record = AuditRecord(
        time=time,
        device_id=device_id,
        unit_id="unit-1",
        crew_id="crew-a",
        consent=ConsentMode.ORAL_CONSENT,
        outcome=outcome,
        card_hash=card_hash,
        clock_synced=True,
        message_id=message_id,
    )
    return published_body(chain(prev, record, key=key), shown)
