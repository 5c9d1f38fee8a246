"""The delivery pipeline over the real reference service (HTTPS + mTLS), a real outbox and audit log."""

from __future__ import annotations

import base64
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_private_key
from mynabox.adapters.outbox import Outbox
from mynabox.adapters.summary_client import HttpsSummaryClient
from mynabox.app.cardread import ReadRecord
from mynabox.app.delivery import Delivery, Identity
from mynabox.app.holding import Holding
from mynabox.app.workers import CardWorker, DeliveryWorker
from mynabox.card.certcheck import TrustStore, check_certificate
from mynabox.card.tlv import MAX_OBJECT
from mynabox.core.effects import StartDelivery
from mynabox.core.events import CardRead, Event, LookupDone, LookupOutcome
from mynabox.payload.bodies import body_problem
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES, Kind
from mynabox.payload.seal import Opener, Sealer
from mynabox.summary.flags import FlagCode
from mynabox.vocab import ConsentMode, Outcome
from mynabox_testkit import testca
from mynabox_testkit.broker import DeliveryKit
from mynabox_testkit.patients import OVERSIZE, patient
from mynabox_testkit.refsvc import ReferenceService
from mynabox_testkit.tlsfiles import certificate_with_cn
from support.fakecard import FakeReader
from support.reads import read_record, with_certificate

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
DEVICE = "ambulance-01"


@dataclass
class Rig:
    delivery: Delivery
    outbox: Outbox
    audit: AuditLog
    opener: Opener
    notified: list[int]
    dir: Path
    clock: list[datetime]


@pytest.fixture
def kit(tmp_path: Path) -> DeliveryKit:
    return DeliveryKit.create(tmp_path / "kit", devices=(DEVICE, "refsvc-client"))


def make_rig(kit: DeliveryKit, tmp_path: Path, base_url: str, *, sealer: Sealer | None = None) -> Rig:
    client_files = kit.pki.client("refsvc-client")
    client = HttpsSummaryClient(
        base_url,
        ca_file=kit.pki.ca_cert,
        client_cert=client_files.cert,
        client_key=client_files.key,
        timeout_s=2.0,
        retries=1,
        backoff_s=0.05,
    )
    outbox = Outbox(tmp_path / "outbox.db")
    audit = AuditLog(tmp_path / "audit.jsonl")
    notified: list[int] = []
    clock = [NOW]
    delivery = Delivery(
        Identity(DEVICE, unit_id="unit-3"),
        lookup=client,
        sealer=sealer or kit.sealer(DEVICE),
        outbox=outbox,
        audit=audit,
        notify=lambda: notified.append(1),
        clock=lambda: clock[0],
        clock_synced=lambda: True,
    )
    return Rig(delivery, outbox, audit, kit.opener(), notified, tmp_path, clock)


@pytest.fixture
def rig(kit: DeliveryKit, tmp_path: Path) -> Iterator[Rig]:
    service = ReferenceService(
        cert_file=kit.pki.server_cert,
        key_file=kit.pki.server_key,
        client_ca_file=kit.pki.ca_cert,
        today=NOW.date(),
    ).start()
    rig = make_rig(kit, tmp_path, service.base_url)
    try:
        yield rig
    finally:
        service.stop()
        rig.outbox.close()


def read_of(patient_key: str) -> ReadRecord:
    der = certificate_with_cn(patient(patient_key).card_id)
    check = check_certificate(der, TrustStore.jlis(), now=NOW, clock_synced=True)
    return read_record(der, "0123456789abcdef", check, NOW)


def opened_bodies(rig: Rig) -> list[tuple[str, Kind, dict[str, object]]]:
    out = []
    for item in rig.outbox.next_batch(100):
        opened = rig.opener.open(item.payload, now=NOW)
        out.append((item.topic, opened.kind, dict(opened.body)))
    return out


def test_found_summary_is_sealed_queued_and_audited(rig: Rig) -> None:
    result = rig.delivery.deliver(read_of("warfarin-elderly"), ConsentMode.ORAL_CONSENT)
    assert result.outcome is Outcome.DELIVERED_SUMMARY
    assert FlagCode.ANTICOAGULANT in {f.code for f in result.flags}
    assert "anticoagulant" in [f.code.value for f in result.flags]
    messages = opened_bodies(rig)
    assert [(t, k) for t, k, _ in messages] == [
        (f"mynabox/{DEVICE}/summary", Kind.SUMMARY),
        (f"mynabox/{DEVICE}/audit", Kind.AUDIT),
    ]
    summary_body = messages[0][2]
    assert "summary" in summary_body
    read_meta = summary_body["read"]
    assert isinstance(read_meta, dict) and read_meta["consent"] == "oral-consent"
    audit_body = messages[1][2]
    assert audit_body["record"]["outcome"] == "delivered-summary"  # type: ignore[index]
    assert audit_body["shown"] == ["anticoagulant"]  # for the gateway only:
    assert b"anticoagulant" not in rig.audit.path.read_bytes()  # the box's own chain keeps no flags
    assert rig.audit.verify().ok
    assert rig.notified  # the link was told to drain


@pytest.mark.parametrize("key", ["warfarin-elderly", "dialysis", "insulin-diabetic", "allergy", "healthy"])
def test_the_summary_message_carries_the_flags_the_box_showed(rig: Rig, key: str) -> None:
    """Each flag with the items that raised it, in the OLED's order; linked to the audit record by id."""
    result = rig.delivery.deliver(read_of(key), ConsentMode.ORAL_CONSENT)
    (_, _, summary_body), (_, _, audit_body) = opened_bodies(rig)
    assert summary_body["flags"] == [f.to_json() for f in result.flags]
    assert (
        [f["code"] for f in summary_body["flags"]]
        == [f.code.value for f in result.flags]
        == audit_body["shown"]
    )  # type: ignore[index]
    for flag, shown in zip(summary_body["flags"], result.flags, strict=True):  # type: ignore[call-overload]
        assert flag["items"] and len(flag["items"]) == len(shown.evidence)  # the OLED's lines, one each
    record = audit_body["record"]
    assert record["message"] == result.message_id and record["card"] == summary_body["read"]["card_hash"]  # type: ignore[index]
    assert body_problem(Kind.SUMMARY, DEVICE, summary_body) is None


def test_not_registered_sends_a_card_record(rig: Rig) -> None:
    result = rig.delivery.deliver(read_of("not-registered"), ConsentMode.LIFE_SAVING_EXCEPTION)
    assert result.outcome is Outcome.NOT_REGISTERED
    assert result.flags == ()
    (_, kind, body), _ = opened_bodies(rig)
    assert kind is Kind.CARD_RECORD
    record = body["card_record"]
    assert isinstance(record, dict) and record["reason"] == "not-registered"


def test_service_down_still_delivers_the_card_record(kit: DeliveryKit, tmp_path: Path) -> None:
    # A port nothing listens on: the real client fails to connect and the box sends the card record.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rig = make_rig(kit, tmp_path, f"https://127.0.0.1:{port}")
    try:
        read = read_of("dialysis")
        result = rig.delivery.deliver(read, ConsentMode.ORAL_CONSENT)
        assert result.outcome is Outcome.CARD_RECORD
        (_, kind, body), (_, _, audit_body) = opened_bodies(rig)
        assert kind is Kind.CARD_RECORD
        record = body["card_record"]
        assert isinstance(record, dict) and record["reason"] == "lookup-unavailable"
        assert base64.b64decode(str(record["certificate"])) == read.jpki.certificate
        assert audit_body["record"]["outcome"] == "card-record"  # type: ignore[index]
    finally:
        rig.outbox.close()


def test_nothing_in_plaintext_on_disk(rig: Rig) -> None:
    p = patient("warfarin-elderly")
    rig.delivery.deliver(read_of("warfarin-elderly"), ConsentMode.ORAL_CONSENT)
    rig.outbox.close()
    markers = [p.card_id.encode(), "ワルファリン".encode()]
    for path in rig.dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for marker in markers:
                assert marker not in data, f"{path.name} holds patient data in plaintext"


def test_purge_writes_an_audit_record_per_message(rig: Rig) -> None:
    rig.delivery.deliver(read_of("healthy"), ConsentMode.ORAL_CONSENT)
    before = rig.outbox.depth()
    rig.clock[0] = NOW.replace(hour=5)
    assert rig.delivery.purge(retention_s=3600) == before
    outcomes = [e.record.outcome for e in rig.audit.entries()]
    assert outcomes.count(Outcome.PURGED) == before
    assert rig.audit.verify().ok


def test_a_summary_past_the_message_limit_goes_out_as_a_card_record(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # About 613 kB of schema-valid JSON from the reference service: it would seal to ≈ 1.07 MB, which the
    # receiver refuses after the broker's PUBACK. The card record lets the hospital repeat the lookup.
    read = read_of(OVERSIZE.key)
    result = rig.delivery.deliver(read, ConsentMode.ORAL_CONSENT)
    assert result.outcome is Outcome.CARD_RECORD
    assert result.flags == ()
    items = rig.outbox.next_batch(100)
    assert all(len(item.payload) <= MAX_MESSAGE_BYTES for item in items)
    (_, kind, body), (_, _, audit_body) = opened_bodies(rig)
    assert kind is Kind.CARD_RECORD
    record = body["card_record"]
    assert isinstance(record, dict) and record["reason"] == "summary-too-large"
    assert base64.b64decode(str(record["certificate"])) == read.jpki.certificate
    assert audit_body["record"]["outcome"] == "card-record"  # type: ignore[index]
    assert "summary too large to send" in caplog.text
    assert OVERSIZE.name not in caplog.text and "アムロジピン" not in caplog.text


def test_the_largest_card_record_fits_the_lowest_limit_a_box_may_set(
    kit: DeliveryKit, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # nothing listens: the lookup fails and the card record goes out
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    smallest = Sealer(
        DEVICE,
        load_private_key(kit.device_key_files[DEVICE]),
        load_private_key(kit.gateway_key_file).public_key(),
        max_bytes=MIN_MESSAGE_BYTES,
    )
    rig = make_rig(kit, tmp_path, f"https://127.0.0.1:{port}", sealer=smallest)
    try:
        read = read_of("dialysis")
        cert = read.jpki.certificate
        largest = with_certificate(read, cert + b"\xff" * (MAX_OBJECT - len(cert)))
        assert rig.delivery.deliver(largest, ConsentMode.ORAL_CONSENT).outcome is Outcome.CARD_RECORD
        (_, kind, body), _ = opened_bodies(rig)
        assert kind is Kind.CARD_RECORD
        assert base64.b64decode(str(body["card_record"]["certificate"])) == largest.jpki.certificate  # type: ignore[index]
    finally:
        rig.outbox.close()


def test_one_holding_for_both_workers_and_the_loop(rig: Rig) -> None:
    """The card worker keeps each read in the holding, the loop forgets (as `wiring.apply` does for
    ForgetPatient) and the delivery worker takes from the same holding: a forgotten patient is never
    delivered, a delivered one leaves memory, and a second delivery of the same read finds nothing."""
    events: queue.Queue[Event] = queue.Queue()
    holding = Holding()
    reader = FakeReader()
    trust = TrustStore.jlis([testca.test_ca_pem()])
    cards = CardWorker(reader, events.put, holding, trust=trust, hash_key=b"k", clock_synced=lambda: True)
    deliveries = DeliveryWorker(rig.delivery, holding, events.put)

    def next_read() -> CardRead:
        while not isinstance(event := events.get(timeout=20), CardRead):
            pass
        return event

    def deliver(read: CardRead) -> LookupDone:
        deliveries.submit(StartDelivery(read.read, read.card_hash, ConsentMode.ORAL_CONSENT))
        while not isinstance(event := events.get(timeout=20), LookupDone):
            pass
        return event

    cards.start()
    deliveries.start()
    try:
        reader.tap(patient("warfarin-elderly").card_id)
        forgotten = next_read()
        reader.tap(patient("dialysis").card_id)
        kept = next_read()
        assert holding.held == 2
        holding.forget(forgotten.read)  # the loop cleared the first patient's screen
        assert deliver(forgotten) == LookupDone(LookupOutcome.UNAVAILABLE, (), queued=0)
        assert rig.outbox.depth() == 0  # nothing of the forgotten patient was looked up or sent
        done = deliver(kept)
        assert done.outcome is LookupOutcome.FOUND and done.queued == 2  # its summary and its audit record
        assert holding.held == 0  # delivered: the certificate left memory
        assert deliver(kept) == LookupDone(LookupOutcome.UNAVAILABLE, (), queued=0)  # taken once
        assert rig.outbox.depth() == 2
    finally:
        deliveries.stop()
        cards.stop()
