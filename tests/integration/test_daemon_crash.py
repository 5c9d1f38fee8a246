"""The daemon killed -9 at random points, 50 times, with reads under way: nothing lost, nothing corrupt.

Each run starts `mynabox run`, taps a synthetic patient's virtual card and kills the process after a random
delay (before the read, during the lookup, while sealing, queueing, auditing or publishing). Then the box
starts cleanly, drains its outbox, the audit chain verifies, and every summary or card record the audit log
says was produced reached the gateway receiver exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.outbox import Outbox
from mynabox.payload.audit import Outcome
from mynabox.payload.envelope import Kind
from mynabox.payload.keys import load_audit_key
from mynabox.payload.seal import Opened
from mynabox.testing.mynacard import VirtualMyNumberCard
from mynabox.testing.notify import NotifySocket
from mynabox.testing.patients import PATIENTS
from mynabox.testing.stack import BoxStack
from mynabox.testing.vpcd import VpcdCardServer

pytestmark = [pytest.mark.stack, pytest.mark.slow]
RUNS = int(os.environ.get("MYNABOX_CRASH_RUNS", "50"))
MYNABOX = str(Path(".venv/bin/mynabox").resolve())
PRODUCED = {Outcome.DELIVERED_SUMMARY, Outcome.CARD_RECORD, Outcome.NOT_REGISTERED}


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_kill_9_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    with BoxStack(device_id="amb-crash", consent_default="oral", workdir=tmp_path / "stack") as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append, client_id="gw-crash")
        receiver.start()
        notify = NotifySocket(tmp_path / "notify.sock")
        env = dict(os.environ, **stack.env(), NOTIFY_SOCKET=str(notify.path))
        log = (tmp_path / "daemon.log").open("ab")
        server: VpcdCardServer | None = None
        try:
            for run in range(RUNS):
                since = time.monotonic()
                daemon = subprocess.Popen(
                    [MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=log
                )
                try:
                    assert wait_for(lambda s=since: notify.seen("READY=1", since=s) >= 1, 20), (
                        f"run {run}: no READY"
                    )
                    stack.pcscd.wait_empty()
                    card = VirtualMyNumberCard(PATIENTS[run % len(PATIENTS)].card_id)
                    server = VpcdCardServer(card, port=stack.pcscd.vpcd_port).start()
                    time.sleep(
                        rng.uniform(0.0, 1.2)
                    )  # pcscd notices the card after ≤ 0.4 s; then read, lookup …
                finally:
                    daemon.send_signal(signal.SIGKILL)
                    daemon.wait(timeout=5)
                    if server is not None:
                        server.remove()
                        server = None
            # A clean start after all that: the outbox drains, then a clean stop.
            since = time.monotonic()
            daemon = subprocess.Popen(
                [MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=log
            )
            try:
                assert wait_for(lambda: notify.seen("READY=1", since=since) >= 1, 20)
                outbox_path = stack.state_dir / "outbox.db"
                assert wait_for(lambda: _depth(outbox_path) == 0, 60), "outbox did not drain"
                time.sleep(1.0)  # the receiver's last messages
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=10) == 0
            finally:
                if daemon.poll() is None:
                    daemon.kill()
            key = load_audit_key(stack.credentials_dir / "audit-key")
            audit = AuditLog(stack.state_dir / "audit.jsonl", key=key)
            verdict = audit.verify()
            assert verdict.ok, verdict.reason
            produced = {e.record.message_id for e in audit.entries() if e.record.outcome in PRODUCED}
            delivered = [o.message_id for o in opened if o.kind in (Kind.SUMMARY, Kind.CARD_RECORD)]
            assert len(delivered) == len(set(delivered)), "a message reached the receiver twice"
            assert produced <= set(delivered), f"{len(produced - set(delivered))} audited messages were lost"
            assert len(produced) >= RUNS // 3, f"only {len(produced)} reads got as far as a delivery"
            print(f"{RUNS} kills: {len(produced)} deliveries audited, {len(delivered)} received, none lost")
        finally:
            receiver.stop()
            notify.close()
            log.close()


def _depth(path: Path) -> int:
    with Outbox(path) as outbox:
        return outbox.depth()
