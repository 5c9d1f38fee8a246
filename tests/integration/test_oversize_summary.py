"""A summary too large to seal within the one message limit, through the real stack: the box sends the card
record instead, the broker takes it and the gateway receiver opens it (issue 10, item 4).

The read starts where the card worker hands over (`Delivery.deliver` with the virtual card's real test-CA
certificate); from there it is the daemon's own code: the reference service over HTTPS + mTLS serving about
613 kB of schema-valid JSON, sealing, the outbox, the MQTT link, mosquitto with TLS, its ACL and its size
limits, and the receiver.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.outbox import Outbox
from mynabox.card.certcheck import TrustStore, check_certificate
from mynabox.card.identity import card_key_hash
from mynabox.config import load_config
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, Kind
from mynabox.payload.seal import Opened
from mynabox.vocab import ConsentMode, Outcome
from mynabox.wiring import build_delivery
from mynabox_testkit import testca
from mynabox_testkit.patients import OVERSIZE, summary_for
from mynabox_testkit.stack import BoxStack
from support.reads import read_record
from support.wait import wait_for

pytestmark = pytest.mark.stack


def test_an_oversize_summary_arrives_as_a_card_record_the_receiver_opens(tmp_path: Path) -> None:
    summary = summary_for(OVERSIZE, date.today())
    assert summary is not None
    served = len(json.dumps(summary.to_json(), ensure_ascii=False).encode("utf-8"))
    assert 600_000 < served < 640_000  # what the reference service sends: far past what seals into the limit
    with BoxStack(device_id="amb-big", with_pcscd=False, workdir=tmp_path / "stack") as stack:
        cfg = load_config(stack.config_path)
        assert cfg.sealing.max_message_bytes == MAX_MESSAGE_BYTES
        stack.state_dir.mkdir(exist_ok=True)
        audit_key = load_audit_key(cfg.audit.key.path)
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append)
        receiver.start()
        assert receiver.subscribed.wait(10)
        with Outbox(stack.state_dir / "outbox.db") as outbox:
            audit = AuditLog(stack.state_dir / "audit.jsonl", key=audit_key)
            link = MqttLink(cfg.mqtt, cfg.device.id, outbox)
            delivery = build_delivery(cfg, outbox, audit, notify=link.notify, clock_synced=lambda: True)
            link.start()
            try:
                der = testca.auth_certificate(OVERSIZE.card_id)
                now = datetime.now(UTC)
                check = check_certificate(
                    der, TrustStore.jlis([testca.test_ca_pem()]), now=now, clock_synced=True
                )
                read = read_record(der, card_key_hash(der, audit_key.reveal()), check, now)
                result = delivery.deliver(read, ConsentMode.ORAL_CONSENT)
                assert result.outcome is Outcome.CARD_RECORD
                assert wait_for(lambda: len(opened) >= 2, 30), f"{len(opened)} opened"
                assert wait_for(lambda: outbox.depth() == 0)
            finally:
                link.stop()
                receiver.stop()
    by_kind = {o.kind: o for o in opened}
    assert len(opened) == 2 and set(by_kind) == {Kind.CARD_RECORD, Kind.AUDIT}
    record = by_kind[Kind.CARD_RECORD].body["card_record"]
    assert isinstance(record, dict) and record["reason"] == "summary-too-large"
    assert base64.b64decode(str(record["certificate"])) == der  # the hospital can repeat the lookup
    audit_record = by_kind[Kind.AUDIT].body["record"]
    assert isinstance(audit_record, dict) and audit_record["outcome"] == "card-record"
    assert audit_record["message"] == by_kind[Kind.CARD_RECORD].message_id
