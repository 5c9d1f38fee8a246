"""The daemon's updater, as a real `mynabox run` subprocess on the real stack: an installed update (the boot
state's primary slot is not the booted one, as RAUC's install leaves it) switches only once the box is idle.

The reboot command is a script that records its call (the box's is `systemctl reboot`); the boot state is
the two copies our RAUC backend writes, the kernel command line a file naming the booted slot.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import mynabox
from mynabox.adapters import updatefiles
from mynabox.adapters.bootfiles import BootFiles
from mynabox.payload.seal import Opened
from mynabox.update import bootstate as bs
from mynabox.update import lastresult
from mynabox_testkit.stack import BoxStack
from support.daemon import MYNABOX, start_daemon, summaries, tap
from support.notify import NotifySocket
from support.wait import wait_for

from .subscriber import Subscriber

pytestmark = pytest.mark.stack
IDLE_MIN = 0.1  # 6 s
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("update-box")


@pytest.fixture(scope="module")
def stack(where: Path) -> Iterator[BoxStack]:
    (where / "boot").mkdir()
    (where / "cmdline").write_text("console=ttyAMA0 rauc.slot=A mynabox.bootstate=ok\n")
    script = where / "reboot"
    script.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {where}/reboots\n')
    script.chmod(0o755)
    update = {
        "idle_min": IDLE_MIN,
        "boot_dir": str(where / "boot"),
        "cmdline": str(where / "cmdline"),
        "reboot_command": f"{script} reboot",
    }
    with BoxStack(
        device_id="amb-upd", consent_default="oral", result_clear_s=2.0, config_extra={"update": update}
    ) as box:
        assert box.pcscd is not None
        box.pcscd.use_in_process()
        yield box


def boot_state(where: Path, order: tuple[str, ...]) -> None:
    files = BootFiles(where / "boot")
    files.write(1, replace(bs.INITIAL, seq=1))
    files.write(0, replace(bs.INITIAL, order=order, b_left=3, seq=2))


def reboots(where: Path) -> list[str]:
    path = where / "reboots"
    return path.read_text().splitlines() if path.exists() else []


def test_an_update_installed_after_a_read_switches_only_after_the_idle_time(
    stack: BoxStack, where: Path, received: list[Opened], tmp_path: Path
) -> None:
    boot_state(where, ("A",))  # nothing installed: the box runs its primary slot
    (where / "reboots").unlink(missing_ok=True)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        time.sleep(1.0)
        assert reboots(where) == []
        card = tap(stack, "warfarin-elderly")
        try:
            assert wait_for(lambda: len(summaries(received)) == 1, 20), log.read_text()
        finally:
            card.remove()
        read_done = time.monotonic()
        # RAUC's install ends with the other slot primary (mark-active): an update now waits.
        BootFiles(where / "boot").change(lambda state: bs.set_primary(state, "B"))
        time.sleep(3.0)  # the loop looks every 5 s, and a read 3 s ago is not idle (6 s)
        assert reboots(where) == [], "rebooted within the idle time after a read"
        assert wait_for(lambda: len(reboots(where)) == 1, 15), log.read_text()
        switch_after_read = time.monotonic() - read_done
        assert reboots(where)[0].endswith(" reboot")
        assert "update: rebooting into the installed slot B (idle: " in log.read_text()
        time.sleep(2.0)
        assert len(reboots(where)) == 1  # asked once; systemd stops the daemon then
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
    print(f"switch {switch_after_read:.1f} s after the read's delivery (idle_min {IDLE_MIN * 60:.0f} s)")
    assert switch_after_read >= IDLE_MIN * 60 - 1.0


def test_a_box_started_with_an_update_waiting_switches_when_idle(
    stack: BoxStack, where: Path, tmp_path: Path
) -> None:
    """A box that was never idle long enough switches at its next start (power-on boots the new slot
    anyway: it is primary); a daemon restarted on the old slot with nothing to do switches at once."""
    boot_state(where, ("B", "A"))
    (where / "reboots").unlink(missing_ok=True)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        assert wait_for(lambda: len(reboots(where)) == 1, 10), log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()


def test_fleet_versions_lists_the_slot_version_and_update_result_from_the_retained_state(
    stack: BoxStack, where: Path, tmp_path: Path
) -> None:
    """The daemon publishes its slot and last update result on its retained state (the schema's keys); a
    fleet-ops `mynabox fleet versions` against the real broker lists them."""
    assert stack.kit is not None and stack.broker is not None
    boot_state(where, ("A",))
    at = datetime(2026, 12, 7, 0, 5, 0, tzinfo=UTC)
    updatefiles.write(stack.state_dir, lastresult.Result(lastresult.INSTALLED, "0.3.0", at, "installed"))
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    gateway = stack.kit.pki.client(stack.kit.gateway)
    states = Subscriber(stack, "gw-versions", "mynabox/amb-upd/state")
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()

        # The retained state of the previous test's daemon comes first; this daemon's follows.
        def published() -> list[dict[str, object]]:
            return [d for p in states.payloads("state") if (d := json.loads(p)).get("update_result")]

        assert wait_for(lambda: len(published()) >= 1, 10)
        document = published()[-1]
        schema = json.loads((REPO / "docs/gateway/schemas/state.schema.json").read_text())
        Draft202012Validator(schema).validate(document)
        assert {k: document[k] for k in ("slot", "update_result", "update_version", "update_at")} == {
            "slot": "A",
            "update_result": "installed",
            "update_version": "0.3.0",
            "update_at": "2026-12-07T00:05:00+00:00",
        }
        listed = subprocess.run(
            [MYNABOX, "fleet", "versions", "--host", "127.0.0.1", "--port", str(stack.broker.port),
             "--ca", str(stack.kit.pki.ca_cert), "--cert", str(gateway.cert), "--key", str(gateway.key),
             "--wait", "2"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["device", "version", "slot", "update_result", "update_version",
                                    "update_at", "state"]  # fmt: skip
        row = next(line.split() for line in lines if line.startswith("amb-upd "))
        assert row == ["amb-upd", mynabox.__version__, "A", "installed", "0.3.0", "2026-12-07T00:05:00+00:00",
                       "idle"]  # fmt: skip
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        states.close()
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
        (stack.state_dir / updatefiles.NAME).unlink(missing_ok=True)


def test_a_boot_with_damaged_boot_state_is_logged_and_on_the_retained_state(
    stack: BoxStack, where: Path, tmp_path: Path
) -> None:
    """boot.scr found both copies bad (it booted RAUC's default order): the daemon says so at start and its
    retained state carries `boot_state`, so fleet ops see a box that may not run the slot last chosen."""
    assert stack.kit is not None and stack.broker is not None
    boot_state(where, ("A",))
    cmdline = where / "cmdline"
    kept = cmdline.read_text()
    cmdline.write_text("console=ttyAMA0 rauc.slot=A mynabox.bootstate=both-bad\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    states = Subscriber(stack, "gw-bootstate", "mynabox/amb-upd/state")
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()

        def published() -> list[dict[str, object]]:
            return [
                d for p in states.payloads("state") if (d := json.loads(p)).get("boot_state") == "both-bad"
            ]

        assert wait_for(lambda: len(published()) >= 1, 10)
        schema = json.loads((REPO / "docs/gateway/schemas/state.schema.json").read_text())
        Draft202012Validator(schema).validate(published()[-1])
        assert "boot.scr found the boot state damaged at this boot (both-bad)" in log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        states.close()
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
        cmdline.write_text(kept)


def test_no_switch_while_an_install_still_runs(stack: BoxStack, where: Path, tmp_path: Path) -> None:
    """RAUC makes the other slot primary before its last steps and `update install` keeps its result after
    them; on the emulated box the daemon rebooted 60 ms before RAUC had finished. While the install's lock
    is held (here by another process, as the install command holds it) the idle box does not switch."""
    boot_state(where, ("B", "A"))
    (where / "reboots").unlink(missing_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib\nfrom mynabox.adapters import updatefiles\n"
         f"with updatefiles.installing(pathlib.Path({str(stack.state_dir)!r})):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        daemon = start_daemon(stack, notify, log)
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        time.sleep(IDLE_MIN * 60 + 8.0)  # idle long enough, and the loop has looked at least once since
        assert reboots(where) == [], "switched while the install still ran"
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert wait_for(lambda: len(reboots(where)) == 1, 15), log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        notify.close()
