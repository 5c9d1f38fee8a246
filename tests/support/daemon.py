"""`mynabox run` as a real subprocess on a `BoxStack`, as the integration tests start it: the command, its
environment (a NOTIFY_SOCKET the test owns), a tap of a synthetic patient's card, and what the kill -9 and
power-cut tests share (a clean boot that drains the outbox, every audited delivery received exactly once)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.gateway.subscriber import Receiver
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.vocab import Outcome
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.notify import NotifySocket
from support.wait import wait_for

MYNABOX = str(Path(".venv/bin/mynabox").resolve())  # the tests run from the repository's root
PRODUCED = {Outcome.DELIVERED_SUMMARY, Outcome.CARD_RECORD, Outcome.NOT_REGISTERED}


def daemon_env(
    stack: BoxStack, notify: NotifySocket, *, watchdog_usec: int | None = 1_000_000
) -> dict[str, str]:
    """The stack's environment with our NOTIFY_SOCKET; the watchdog as systemd would set it (None: none)."""
    env = dict(os.environ, **stack.env(), NOTIFY_SOCKET=str(notify.path))
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return env


def run_daemon(
    env: dict[str, str], log: BinaryIO, config: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`mynabox run --config CONFIG`, its stderr (the log) appended to `log`."""
    return subprocess.Popen([MYNABOX, "run", "--config", str(config)], env=env, stderr=log, cwd=cwd)


def start_daemon(stack: BoxStack, notify: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    """The daemon of `stack` with a 1 s watchdog, logging to the file `log` (appended)."""
    with log.open("ab") as out:
        return run_daemon(daemon_env(stack, notify), out, stack.config_path)


def tap(stack: BoxStack, key: str) -> VpcdCardServer:
    """Hold the card of synthetic patient `key` on the stack's reader (`.remove()` takes it away)."""
    assert stack.pcscd is not None
    stack.pcscd.wait_empty()
    return VpcdCardServer(VirtualMyNumberCard(patient(key).card_id), port=stack.pcscd.vpcd_port).start()


def summaries(opened: list[Opened]) -> list[Opened]:
    """The deliveries among what the receiver opened (summaries and card records, no audit records)."""
    return [o for o in opened if o.kind in (Kind.SUMMARY, Kind.CARD_RECORD)]


def outbox_depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        depth: int = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return depth


def clean_boot(stack: BoxStack, env: dict[str, str], log: BinaryIO, notify: NotifySocket) -> set[str]:
    """Start, drain the outbox, stop with SIGTERM; check the outbox and the audit chain; the message ids the
    audit log says a read produced."""
    since = time.monotonic()
    daemon = run_daemon(env, log, stack.config_path)
    outbox = stack.state_dir / "outbox.db"
    try:
        assert wait_for(lambda: notify.seen("READY=1", since=since) >= 1, 20), "no READY"
        assert wait_for(lambda: outbox_depth(outbox) == 0, 60), "the outbox did not drain"
        time.sleep(1.0)  # the receiver's last messages
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    with sqlite3.connect(outbox) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    audit = AuditLog(stack.state_dir / "audit.jsonl", key=load_audit_key(stack.credentials_dir / "audit-key"))
    verdict = audit.verify()
    assert verdict.ok, verdict.reason
    return {
        e.record.message_id for e in audit.entries() if e.record.outcome in PRODUCED and e.record.message_id
    }


def assert_received_once(
    opened: list[Opened], produced: set[str], runs: int, *, receiver: Receiver, stack: BoxStack
) -> list[str]:
    """Called while `receiver` still runs: a drained outbox means the broker holds every message, and a
    receiver that was in its reconnect back-off when the test ended gets them late (two CI runs stopped it
    1 s after the drain and counted 11 and 14 "lost" though the broker's session held them)."""
    arrived = wait_for(lambda: produced <= {o.message_id for o in summaries(opened)}, 120)
    delivered = [o.message_id for o in summaries(opened)]
    assert len(delivered) == len(set(delivered)), "a message reached the receiver twice"
    if not arrived:
        lost = produced - set(delivered)
        broker_log = stack.broker.log() if stack.broker else ""
        # The broker names a client by its certificate's CN (use_username_as_clientid), not the id it asked.
        name = stack.kit.gateway if stack.kit else receiver.client_id
        mine = [line for line in broker_log.splitlines() if name in line or "terminating" in line][-16:]
        raise AssertionError(
            f"{len(lost)} audited messages were lost ({len(delivered)} received; receiver connected: "
            f"{receiver.connected}); the broker on the receiver:\n" + "\n".join(mine)
        )
    assert len(produced) >= runs // 3, f"only {len(produced)} reads got as far as a delivery"
    return delivered
