"""A summary service that drips its answer, against `mynabox run` as a subprocess on the real stack.

One byte every 0.5 s in the status line keeps every socket read busy. The lookup must still end at
`summary.limit_s`: the card record goes out, the read's audit record is written, and the watchdog pings
never stop (a delivery counts as hung only after limit_s + 30 s, which must never be reached). Before the
fix the lookup lasted as long as the server dripped (150 s in the attack; here 120 s).
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.adapters.outbox import Outbox
from mynabox.app.readtiming import parse
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.vocab import Outcome
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.daemon import start_daemon
from support.hostile import DRIP_PLACES, HostileServer, drip
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = pytest.mark.stack
LIMIT_S = 3.0


@pytest.fixture
def dripping_stack() -> Iterator[tuple[BoxStack, HostileServer]]:
    with BoxStack(device_id="amb-drip", consent_default="oral") as stack:
        assert stack.kit is not None and stack.pcscd is not None
        stack.pcscd.use_in_process()
        prefix, byte = DRIP_PLACES["status line"]
        with HostileServer(stack.kit.pki, drip(prefix, byte, every_s=0.5, for_s=120)) as server:
            stack.config_extra = {
                "summary": {"url": server.base_url, "limit_s": LIMIT_S, "timeout_s": 2.0, "retries": 1}
            }
            stack.write_config()
            yield stack, server


def test_a_dripping_service_ends_in_a_card_record_within_the_limit(
    dripping_stack: tuple[BoxStack, HostileServer], tmp_path: Path
) -> None:
    stack, server = dripping_stack
    assert stack.pcscd is not None
    received: list[Opened] = []
    receiver = stack.gateway_receiver(received.append, client_id="gw-drip")
    receiver.start()
    assert receiver.subscribed.wait(10)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(stack, notify, log)
    card: VpcdCardServer | None = None
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        stack.pcscd.wait_empty()
        tapped = time.monotonic()
        card = VpcdCardServer(
            VirtualMyNumberCard(patient("warfarin-elderly").card_id), port=stack.pcscd.vpcd_port
        ).start()

        def card_record() -> bool:
            return any(o.kind is Kind.CARD_RECORD for o in received)

        assert wait_for(card_record, LIMIT_S + 10), log.read_text()
        arrived = time.monotonic() - tapped
        assert wait_for(lambda: any(o.kind is Kind.AUDIT for o in received), 10)
        assert server.connections >= 1  # the lookup really met the dripping server
        # Pings went on all along (every 0.5-1 s: the loop wakes at least once a second), so the watchdog
        # never had a reason to restart the box.
        pings = [at for at, text in list(notify.messages) if text == "WATCHDOG=1" and at >= tapped - 1.0]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert pings and pings[-1] >= tapped + arrived - 1.5 and max(gaps) < 2.0, gaps
        assert not any(text.startswith("STATUS=hung") for _, text in notify.messages)
    finally:
        if card is not None:
            card.remove()
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        notify.close()
        receiver.stop()
    timings = dict(p for line in log.read_text().splitlines() if (p := parse(line)) is not None)
    assert timings["delivered"]["lookup_ms"] <= (LIMIT_S + 0.3) * 1000, timings
    assert "summary lookup unavailable: timed out waiting for the service" in log.read_text()
    assert stack.kit is not None
    audit = AuditLog(stack.state_dir / "audit.jsonl", key=load_audit_key(stack.credentials_dir / "audit-key"))
    assert [e.record.outcome for e in audit.entries()] == [Outcome.CARD_RECORD]
    assert audit.verify().ok


def test_sigterm_during_a_dripping_lookup_still_queues_the_card_record(
    dripping_stack: tuple[BoxStack, HostileServer], tmp_path: Path
) -> None:
    """systemd stops the box (TimeoutStopSec=5) while 照会中 waits on a dripping service: the lookup ends at
    once, the card record and the audit record are on disk before the process exits, quickly."""
    stack, server = dripping_stack
    assert stack.pcscd is not None
    # The defaults' worst case and more: waiting the lookup out would pass systemd's TimeoutStopSec.
    stack.config_extra["summary"].update(limit_s=30.0, timeout_s=20.0)
    stack.write_config()
    received: list[Opened] = []
    receiver = stack.gateway_receiver(received.append, client_id="gw-drip-term")
    receiver.start()
    assert receiver.subscribed.wait(10)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(stack, notify, log)
    card: VpcdCardServer | None = None
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        stack.pcscd.wait_empty()
        card = VpcdCardServer(
            VirtualMyNumberCard(patient("warfarin-elderly").card_id), port=stack.pcscd.vpcd_port
        ).start()
        assert wait_for(lambda: any(r.startswith(b"POST ") for r in server.requests), 15), log.read_text()
        time.sleep(0.5)  # the status line is dripping now
        term = time.monotonic()
        daemon.terminate()
        assert daemon.wait(timeout=15) == 0
        stop_s = time.monotonic() - term
    finally:
        if card is not None:
            card.remove()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
        notify.close()
        time.sleep(1.0)  # anything published before the link stopped reaches the receiver
        receiver.stop()
    assert stop_s < 2.0, f"SIGTERM took {stop_s:.1f} s"
    audit = AuditLog(stack.state_dir / "audit.jsonl", key=load_audit_key(stack.credentials_dir / "audit-key"))
    assert [e.record.outcome for e in audit.entries()] == [Outcome.CARD_RECORD], log.read_text()
    with Outbox(stack.state_dir / "outbox.db") as outbox:
        queued = [item.topic for item in outbox.next_batch(10)]
    # Published before the link stopped, or waiting in the outbox for the next start: never lost. Both at once
    # is QoS 1 at work: the broker had it, the box stopped before its PUBACK; the gateway drops the resend.
    published = sum(1 for o in received if o.kind is Kind.CARD_RECORD)
    assert published <= 1 and queued.count("mynabox/amb-drip/summary") + published >= 1, (queued, published)
