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
import time
from pathlib import Path

import pytest

from mynabox.payload.seal import Opened
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import PATIENTS
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.daemon import assert_received_once, clean_boot, daemon_env, run_daemon
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]
RUNS = int(os.environ.get("MYNABOX_CRASH_RUNS", "50"))


def test_kill_9_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    with BoxStack(device_id="amb-crash", consent_default="oral", workdir=tmp_path / "stack") as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append, client_id="gw-crash")
        receiver.start()
        assert receiver.subscribed.wait(20), "the receiver never subscribed"
        notify = NotifySocket(tmp_path / "notify.sock")
        env = daemon_env(stack, notify, watchdog_usec=None)
        log = (tmp_path / "daemon.log").open("ab")
        server: VpcdCardServer | None = None
        try:
            for run in range(RUNS):
                since = time.monotonic()
                daemon = run_daemon(env, log, stack.config_path)
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
            produced = clean_boot(stack, env, log, notify)
            delivered = assert_received_once(opened, produced, RUNS, receiver=receiver, stack=stack)
        finally:
            receiver.stop()
            notify.close()
            log.close()
    print(f"{RUNS} kills: {len(produced)} deliveries audited, {len(delivered)} received, none lost")
