"""The daemon's power cut at random points, with reads under way: nothing promised is lost, nothing corrupt.

Like test_daemon_crash.py, but the state directory (outbox.db with its WAL, audit.jsonl) lives on the
power-cut file system (`support.lazyfs`): after each `kill -9` every write the daemon had not
fsynced is thrown away ("drop") or lands torn ("torn", a seeded subset of 512-byte sectors), as when the
ambulance's power goes. Every third run the broker is down, so the cut hits records waiting in the outbox.
Then the box boots cleanly, drains, and: SQLite's integrity check passes, the audit chain verifies, and
every summary or card record a surviving audit record names reached the gateway receiver exactly once.
With the outbox switched to synchronous=OFF this test fails (7 of 9 audited messages lost when tried), so
its pass means the fsyncs are where they must be.
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
from support.lazyfs import LazyMount, fuse_available
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.skipif(fuse_available() is not None, reason=f"FUSE: {fuse_available()}"),
]
RUNS = int(os.environ.get("MYNABOX_POWERLOSS_RUNS", "30"))


def test_power_cut_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    dropped = cut_with_queue = 0
    with BoxStack(device_id="amb-power", consent_default="oral", workdir=tmp_path / "stack") as stack:
        assert stack.pcscd is not None and stack.broker is not None
        stack.pcscd.use_in_process()
        disk = tmp_path / "disk"  # the SD card; the state directory is its mount
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append, client_id="gw-power")
        receiver.start()
        assert receiver.subscribed.wait(20), "the receiver never subscribed"
        notify = NotifySocket(tmp_path / "notify.sock")
        env = daemon_env(stack, notify, watchdog_usec=None)
        log = (tmp_path / "daemon.log").open("ab")
        try:
            for run in range(RUNS):
                offline = run % 3 == 2
                if offline:
                    stack.broker.stop()
                with LazyMount(disk, stack.state_dir) as mount:
                    since = time.monotonic()
                    daemon = run_daemon(env, log, stack.config_path)
                    server: VpcdCardServer | None = None
                    try:
                        assert wait_for(lambda s=since: notify.seen("READY=1", since=s) >= 1, 20), run
                        stack.pcscd.wait_empty()
                        card = VirtualMyNumberCard(PATIENTS[run % len(PATIENTS)].card_id)
                        server = VpcdCardServer(card, port=stack.pcscd.vpcd_port).start()
                        time.sleep(
                            rng.uniform(0.3, 1.2)
                        )  # pcscd sees the card after ≈ 0.4 s; then the read …
                    finally:
                        daemon.send_signal(signal.SIGKILL)
                        daemon.wait(timeout=5)
                        if server is not None:
                            server.remove()
                    stats = mount.power_cut("torn" if run % 2 else "drop", seed=run)
                    dropped += stats["dropped_bytes"]
                    cut_with_queue += offline
                if offline:
                    stack.broker.start()
            with LazyMount(disk, stack.state_dir):  # the clean boot after all that
                produced = clean_boot(stack, env, log, notify)
            assert_received_once(opened, produced, RUNS, receiver=receiver, stack=stack)
        finally:
            receiver.stop()
            notify.close()
            log.close()
    assert dropped > 0, "the cuts never caught an unsynced write: the test proved nothing"
    print(
        f"{RUNS} power cuts ({cut_with_queue} with the broker down): {dropped} unsynced bytes lost, "
        f"{len(produced)} deliveries audited, all received once"
    )
