"""What the kill -9 and power-cut tests share: the daemon's command, a clean boot that drains the outbox,
and the check that every audited delivery reached the gateway receiver exactly once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.vocab import Outcome
from mynabox_testkit.stack import BoxStack
from support.notify import NotifySocket
from support.wait import wait_for

MYNABOX = str(Path(".venv/bin/mynabox").resolve())
PRODUCED = {Outcome.DELIVERED_SUMMARY, Outcome.CARD_RECORD, Outcome.NOT_REGISTERED}


def start_daemon(stack: BoxStack, env: dict[str, str], log: BinaryIO) -> subprocess.Popen[bytes]:
    return subprocess.Popen([MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=log)


def outbox_depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        depth: int = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return depth


def clean_boot(stack: BoxStack, env: dict[str, str], log: BinaryIO, notify: NotifySocket) -> set[str]:
    """Start, drain the outbox, stop with SIGTERM; check the outbox and the audit chain; the message ids the
    audit log says a read produced."""
    since = time.monotonic()
    daemon = start_daemon(stack, env, log)
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


def assert_received_once(opened: list[Opened], produced: set[str], runs: int) -> list[str]:
    delivered = [o.message_id for o in opened if o.kind in (Kind.SUMMARY, Kind.CARD_RECORD)]
    assert len(delivered) == len(set(delivered)), "a message reached the receiver twice"
    assert produced <= set(delivered), f"{len(produced - set(delivered))} audited messages were lost"
    assert len(produced) >= runs // 3, f"only {len(produced)} reads got as far as a delivery"
    return delivered
