"""Issue 10 item 11: the box's own audit chain holds no health data; the gateway still learns what was shown.

Real reads of the warfarin patient through the daemon subprocess (pcscd + vpcd + the virtual card, the
reference summary service, mosquitto with TLS, the gateway receiver): afterwards no flag code or label is in
the local audit file, `mynabox audit verify` passes on it, and each audit message the gateway opened carries
what the OLED showed (``shown``) bound to the very entry the box chained.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.payload.audit import PublishedAudit
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.summary.flags import FlagCode, drug_classes
from mynabox.vocab import Outcome
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from support.daemon import MYNABOX, start_daemon
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = pytest.mark.stack
READS = 2


@pytest.fixture
def stack() -> Iterator[BoxStack]:
    with BoxStack(device_id="amb-audit", consent_default="oral") as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


def test_local_audit_chain_holds_no_flags_and_the_gateway_gets_them(stack: BoxStack, tmp_path: Path) -> None:
    from mynabox_testkit.vpcd import VpcdCardServer

    assert stack.pcscd is not None
    opened: list[Opened] = []
    receiver = stack.gateway_receiver(opened.append, client_id="gw-audit")
    receiver.start()
    assert receiver.subscribed.wait(10)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        for n in range(1, READS + 1):
            stack.pcscd.wait_empty()
            card = VpcdCardServer(
                VirtualMyNumberCard(patient("warfarin-elderly").card_id), port=stack.pcscd.vpcd_port
            ).start()
            try:
                audits = lambda: [o for o in opened if o.kind is Kind.AUDIT]  # noqa: E731
                assert wait_for(lambda: len(audits()) >= n, 20), log.read_text()  # noqa: B023
            finally:
                card.remove()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
        receiver.stop()

    # The box's disk: no flag code, flag label or drug-class name anywhere in the audit file.
    path = stack.state_dir / "audit.jsonl"
    data = path.read_bytes()
    health = [c.value for c in FlagCode] + [c.label for c in drug_classes()] + ["抗凝固薬", "ワルファリン"]
    assert data and not [h for h in health if h.encode() in data], data.decode()
    key_file = stack.credentials_dir / "audit-key"
    verify = subprocess.run(
        [MYNABOX, "audit", "verify", "--path", str(path), "--key", str(key_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verify.returncode == 0 and verify.stdout.startswith(f"OK {READS} entries"), verify.stdout

    # The gateway: each audit message is the chained entry as on disk plus what was shown.
    local = {e.record.message_id: e for e in AuditLog(path, key=load_audit_key(key_file)).entries()}
    published = [PublishedAudit.from_dict(o.body) for o in opened if o.kind is Kind.AUDIT]
    assert len(published) == READS
    for p in published:
        assert p.entry.record.outcome is Outcome.DELIVERED_SUMMARY
        assert p.items == ("anticoagulant",)
        assert local[p.entry.record.message_id] == p.entry  # the same record, prev and hash
