"""200 reads while the gateway's broker is down: each looked up for real, sealed, queued and audited; the
broker comes back and every summary and audit record arrives exactly once.

The reads start where the card worker hands over (`Delivery.deliver` with the virtual cards' real test-CA
certificates): 200 taps through pcscd would spend ≈ 5 min in vpcd's presence poll and prove nothing the
card-path and daemon tests do not. Everything after the card is the daemon's own code on the real stack:
the reference service over HTTPS + mTLS, the outbox in SQLite, the audit log, the MQTT link, mosquitto with
TLS and its ACL, the gateway receiver.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.outbox import Outbox
from mynabox.card.certcheck import TrustStore, check_certificate
from mynabox.card.identity import card_key_hash
from mynabox.config import load_config
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.vocab import ConsentMode, Outcome
from mynabox.wiring import build_delivery
from mynabox_testkit import testca
from mynabox_testkit.patients import PATIENTS
from mynabox_testkit.stack import BoxStack
from support.reads import read_record
from support.wait import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]
READS = 200


def test_200_reads_queued_while_the_broker_is_down_arrive_once(tmp_path: Path) -> None:
    with BoxStack(device_id="amb-offline", with_pcscd=False, workdir=tmp_path / "stack") as stack:
        assert stack.broker is not None
        cfg = load_config(stack.config_path)
        stack.state_dir.mkdir(exist_ok=True)
        audit_key = load_audit_key(cfg.audit.key.path)
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append, client_id="gw-offline")
        receiver.start()
        stack.broker.stop()
        trust = TrustStore.jlis([testca.test_ca_pem()])
        outcomes: Counter[Outcome] = Counter()
        with Outbox(stack.state_dir / "outbox.db") as outbox:
            audit = AuditLog(stack.state_dir / "audit.jsonl", key=audit_key)
            link = MqttLink(cfg.mqtt, cfg.device.id, outbox)
            delivery = build_delivery(cfg, outbox, audit, notify=link.notify, clock_synced=lambda: True)
            link.start()
            try:
                for i in range(READS):
                    der = testca.auth_certificate(PATIENTS[i % len(PATIENTS)].card_id)
                    now = datetime.now(UTC)
                    check = check_certificate(der, trust, now=now, clock_synced=True)
                    context = read_record(der, card_key_hash(der, audit_key.reveal()), check, now)
                    outcomes[delivery.deliver(context, ConsentMode.ORAL_CONSENT).outcome] += 1
                assert not link.online
                assert outbox.depth() == 2 * READS  # each read: its summary or card record, its audit record
                stack.broker.start()
                assert wait_for(lambda: outbox.depth() == 0, 90), f"{outbox.depth()} still queued"
                assert wait_for(lambda: len(opened) >= 2 * READS, 30)
            finally:
                link.stop()
                receiver.stop()
            assert audit.verify().ok and len(audit) == READS
    kinds = Counter(o.kind for o in opened)
    assert kinds[Kind.AUDIT] == READS and kinds[Kind.SUMMARY] + kinds[Kind.CARD_RECORD] == READS
    assert len({o.message_id for o in opened}) == len(opened) == 2 * READS  # exactly once
    assert outcomes[Outcome.DELIVERED_SUMMARY] == kinds[Kind.SUMMARY] > 0
    assert outcomes[Outcome.NOT_REGISTERED] == kinds[Kind.CARD_RECORD] > 0
