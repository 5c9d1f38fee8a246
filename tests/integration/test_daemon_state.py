"""The retained `…/state` says what is true: from the first message after start to the last one at stop.

Fleet ops read it to see each box (issue: at stop it said `outbox_depth: 2` with an empty outbox, and
`clock_synced` flapped from true to false right after start on a box whose clock was never synced).
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.clock import clock_synced
from mynabox_testkit.stack import BoxStack
from support.daemon import start_daemon, tap
from support.notify import NotifySocket
from support.wait import wait_for

from .subscriber import Subscriber

pytestmark = pytest.mark.stack
DEVICE = "amb-state"


@pytest.fixture(scope="module")
def stack() -> Iterator[BoxStack]:
    with BoxStack(device_id=DEVICE, consent_default="oral") as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


class States(Subscriber):
    """Every state message the broker hands a gateway-side subscriber (the retained one first)."""

    def __init__(self, stack: BoxStack, client_id: str) -> None:
        # all of the box's topics: a summary nobody subscribes to gets PUBACK 0x10 and stays in the outbox
        super().__init__(stack, client_id, f"mynabox/{DEVICE}/#")

    @property
    def seen(self) -> list[dict[str, object]]:
        return [json.loads(p) for p in self.payloads("state")]


def _outbox_rows(stack: BoxStack) -> int:
    with sqlite3.connect(stack.state_dir / "outbox.db") as db:
        rows: int = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return rows


def test_state_is_true_from_start_to_stop(stack: BoxStack, tmp_path: Path) -> None:
    assert stack.broker is not None
    notify, log = NotifySocket(tmp_path / "notify.sock"), tmp_path / "daemon.log"
    states = States(stack, "gw-state-live")
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        assert wait_for(lambda: len(states.seen) >= 1, 10)
        # Two reads while the broker is away: they wait in the outbox.
        stack.broker.stop()
        for key in ("warfarin-elderly", "dialysis"):
            card = tap(stack, key)
            try:
                assert wait_for(lambda: "read delivered" in log.read_text() or _outbox_rows(stack) > 0, 20)
            finally:
                card.remove()
        assert wait_for(lambda: _outbox_rows(stack) == 2, 20), log.read_text()
        states.close()
        stack.broker.start()
        states = States(stack, "gw-state-live2")
        assert wait_for(lambda: _outbox_rows(stack) == 0, 20), log.read_text()
        daemon.send_signal(signal.SIGTERM)  # at once: within the loop's housekeeping second
        assert daemon.wait(timeout=5) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
        states.close()
    host_synced = clock_synced()
    flips = [s["clock_synced"] for s in states.seen]
    assert set(flips) == {host_synced}, f"clock_synced went {flips} on a host whose clock is {host_synced}"

    last = States(stack, "gw-state-after")  # the retained message a fleet dashboard sees now
    try:
        assert wait_for(lambda: len(last.seen) >= 1, 10)
        assert last.seen[-1]["state"] == "stopped"
        assert last.seen[-1]["outbox_depth"] == _outbox_rows(stack) == 0, last.seen[-1]
        assert last.seen[-1]["clock_synced"] is host_synced
    finally:
        last.close()
