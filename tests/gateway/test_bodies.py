"""The receiver's body rules (docs/gateway.md, checks 8-9): the signer is the only device a body speaks for,
each body is what its kind says, and a refused body uses up nothing; a message id seen again under another
``seq`` is refused, not dropped as a duplicate."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.receiving import DEV, NOW, OTHER  # tests/ is on sys.path
from mynabox.gateway.core import Accepted, Duplicate, ReceiverCore, Rejected
from mynabox.gateway.store import SeenStore
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox_testkit.broker import DeliveryKit
from mynabox_testkit.messages import audit_body, patient_body
from mynabox_testkit.patients import patient
from support.envelopes import seal_claims


@pytest.fixture
def strict(kit: DeliveryKit, tmp_path: Path) -> Iterator[ReceiverCore]:
    """The reference receiver as `mynabox receive` runs it: bodies checked."""
    seen = SeenStore(tmp_path / "strict.sqlite3")
    sunk: list[Opened] = []
    core = ReceiverCore(kit.opener(), seen, sunk.append, check_bodies=True)
    core.sunk = sunk  # type: ignore[attr-defined]
    try:
        yield core
    finally:
        seen.close()


def _audit(kit: DeliveryKit, signer: str, named: str, seq: int) -> bytes:
    body = audit_body(named, time=NOW, message_id=uuid.uuid4().hex, shown=["anticoagulant"])
    return kit.sealer(signer).seal(Kind.AUDIT, body, now=NOW, clock_synced=True, seq=seq).token


@pytest.mark.parametrize("checked", [False, True], ids=["relay", "reference"])
def test_an_audit_record_naming_another_box_is_a_forgery(
    kit: DeliveryKit, tmp_path: Path, checked: bool
) -> None:
    """Box OTHER signs an audit record that says it is DEV's: refused whether or not bodies are checked."""
    seen = SeenStore(tmp_path / "seen.sqlite3")
    sunk: list[Opened] = []
    core = ReceiverCore(kit.opener(), seen, sunk.append, check_bodies=checked)
    try:
        forged = _audit(kit, OTHER, DEV, seq=1)
        assert core.handle(f"mynabox/{OTHER}/audit", forged, now=NOW) == Rejected("device-body")
        assert [e.reason for e in seen.quarantined()] == ["device-body"]
        assert not sunk
        genuine = _audit(kit, OTHER, OTHER, seq=1)  # the forgery used up nothing: seq 1 is still free
        assert isinstance(core.handle(f"mynabox/{OTHER}/audit", genuine, now=NOW), Accepted)
    finally:
        seen.close()


def test_what_the_box_sends_for_every_patient_passes_the_body_check(
    kit: DeliveryKit, strict: ReceiverCore
) -> None:
    for seq, key in enumerate(("warfarin-elderly", "dialysis", "allergy", "not-registered"), 1):
        kind, body, _ = patient_body(patient(key), NOW)
        token = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=seq).token
        assert isinstance(strict.handle(f"mynabox/{DEV}/summary", token, now=NOW), Accepted), key
    assert isinstance(strict.handle(f"mynabox/{DEV}/audit", _audit(kit, DEV, DEV, 5), now=NOW), Accepted)


def test_a_refused_body_does_not_use_up_its_seq(kit: DeliveryKit, strict: ReceiverCore) -> None:
    topic = f"mynabox/{DEV}/summary"
    kind, body, _ = patient_body(patient("warfarin-elderly"), NOW)
    del body["flags"]  # a body without the flags the box showed
    bad = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=7).token
    assert strict.handle(topic, bad, now=NOW) == Rejected("body")
    assert strict._seen.highest(DEV) == 0  # type: ignore[attr-defined]
    kind, body, _ = patient_body(patient("warfarin-elderly"), NOW)
    good = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=7).token
    assert isinstance(strict.handle(topic, good, now=NOW), Accepted)
    assert strict.handle(topic, bad, now=NOW) == Rejected("body")  # refused again, not a duplicate


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b["read"].update(card_hash="X" * 16),
        lambda b: b["read"]["certificate_check"].pop("status"),
        lambda b: b["flags"][0].update(code="aspirin"),
        lambda b: b["flags"][0]["items"][0].update(yj_code="warfarin"),
        lambda b: b["flags"][0]["items"][0].update(date="2026-02-30"),
        lambda b: b["flags"].append(b["flags"][0]),  # a flag twice
        lambda b: b["summary"].update(schema_version=2),
        lambda b: b.update(extra=1),
    ],
    ids=["card-hash", "cert-check", "flag-code", "yj", "date", "flag-twice", "summary", "extra-key"],
)
def test_a_summary_body_off_its_schema_is_refused(kit: DeliveryKit, strict: ReceiverCore, damage) -> None:
    kind, body, _ = patient_body(patient("warfarin-elderly"), NOW)
    damage(body)
    token = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=1).token
    assert strict.handle(f"mynabox/{DEV}/summary", token, now=NOW) == Rejected("body")


def _claims(message_id: str, seq: int, device: str = DEV) -> dict[str, object]:
    return {
        "jti": message_id,
        "kind": "summary",
        "device": device,
        "iat": int(NOW.timestamp()),
        "clock_synced": True,
        "body": {"n": seq},
        "seq": seq,
    }


def test_a_message_id_seen_again_under_another_seq_is_refused(kit: DeliveryKit, core: ReceiverCore) -> None:
    """A box never sends one id under two numbers: before, the second was dropped as a duplicate (lost)."""
    topic = f"mynabox/{DEV}/summary"
    jti = uuid.uuid4().hex
    first = seal_claims(kit.sealer(DEV), _claims(jti, 1))
    assert isinstance(core.handle(topic, first, now=NOW), Accepted)
    assert isinstance(core.handle(topic, first, now=NOW), Duplicate)  # the same bytes again: a duplicate
    again = seal_claims(kit.sealer(DEV), _claims(jti, 2))
    assert core.handle(topic, again, now=NOW) == Rejected("message-id-reused")
    other = seal_claims(kit.sealer(OTHER), _claims(jti, 1, OTHER))  # another box's id: not its duplicate
    assert core.handle(f"mynabox/{OTHER}/summary", other, now=NOW) == Rejected("message-id-reused")
    assert [e.reason for e in core._seen.quarantined()] == ["message-id-reused"] * 2  # type: ignore[attr-defined]


def test_a_refusal_log_names_the_topic_device_not_the_envelope_one(
    kit: DeliveryKit, core: ReceiverCore, caplog: pytest.LogCaptureFixture
) -> None:
    token = seal_claims(kit.sealer(DEV), _claims(uuid.uuid4().hex, 1))
    with caplog.at_level(logging.INFO, logger="mynabox.gateway.receiver"):
        assert core.handle(f"mynabox/{OTHER}/summary", token, now=NOW) == Rejected("device-topic")
    assert f"on {OTHER}: device-topic" in caplog.text and DEV not in caplog.text


def test_what_must_be_remembered_is_committed_before_the_acknowledgement(
    kit: DeliveryKit, tmp_path: Path
) -> None:
    """The store cannot write (SQLite refuses: query_only): handle raises, so the subscriber sends no PUBACK
    and the broker redelivers; nothing was remembered, and the redelivery is accepted once it can be."""
    seen = SeenStore(tmp_path / "seen.sqlite3")
    core = ReceiverCore(kit.opener(), seen, lambda _o: None, check_bodies=True)
    kind, body, _ = patient_body(patient("healthy"), NOW)
    token = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=3).token
    try:
        seen._db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
        with pytest.raises(sqlite3.OperationalError):
            core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
        seen._db.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]
        assert seen.highest(DEV) == 0 and len(seen) == 0
        assert isinstance(core.handle(f"mynabox/{DEV}/summary", token, now=NOW), Accepted)
    finally:
        seen.close()
    reopened = SeenStore(tmp_path / "seen.sqlite3")  # and it survives a restart of the receiver
    try:
        assert reopened.highest(DEV) == 3 and len(reopened) == 1
        again = ReceiverCore(kit.opener(), reopened, lambda _o: None, check_bodies=True)
        assert isinstance(again.handle(f"mynabox/{DEV}/summary", token, now=NOW), Duplicate)
    finally:
        reopened.close()
