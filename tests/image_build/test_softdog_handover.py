"""The boot's softdog handover (image-build/rootfs-overlay/usr/lib/mynabox/softdog-handover, run early by
mynabox-softdog-handover.service) under the image's shell (dash). No watchdog can be loaded on a shared host
(softdog armed here would reset the machine), so the watchdog class in sysfs and the device nodes are
stand-ins: directories with the attributes the script reads and regular files for the nodes, which then
hold what the script wrote (the magic close is 'V'). The kernel side is the boot test's: the image's real
softdog and i6300esb under qemu (check_softdog_handover)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

HANDOVER = Path(__file__).resolve().parents[2] / "image-build/rootfs-overlay/usr/lib/mynabox/softdog-handover"
SHELL = shutil.which("dash") or "/bin/sh"
SOFT = "Software Watchdog"


@dataclass
class Run:
    rc: int
    out: str
    log: str
    written: dict[str, str]  # node name -> what the script wrote into it


class Watchdogs:
    """A /sys/class/watchdog and a /dev of stand-ins: each watchdogN with identity and state, its node."""

    def __init__(self, root: Path) -> None:
        self.sys, self.dev, self.log = root / "sys", root / "dev", root / "kmsg"
        self.sys.mkdir()
        self.dev.mkdir()

    def add(self, name: str, identity: str, state: str = "inactive", node: bool = True) -> None:
        (self.sys / name).mkdir()
        (self.sys / name / "identity").write_text(identity + "\n")
        (self.sys / name / "state").write_text(state + "\n")
        if node:
            (self.dev / name).write_bytes(b"")

    def link(self, name: str) -> None:
        (self.dev / "watchdog-hw").symlink_to(name)

    def run(self, wait_s: int = 1) -> Run:
        done = subprocess.run(
            [SHELL, str(HANDOVER), str(wait_s)],
            env={
                "PATH": "/usr/bin:/bin",
                "MYNABOX_WATCHDOG_SYS": str(self.sys),
                "MYNABOX_WATCHDOG_DEV": str(self.dev),
                "MYNABOX_WATCHDOG_LOG": str(self.log),
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        written = {p.name: p.read_text() for p in self.dev.iterdir() if p.is_file() and not p.is_symlink()}
        log = self.log.read_text() if self.log.exists() else ""
        return Run(done.returncode, done.stdout + done.stderr, log, written)


@pytest.fixture
def wd(tmp_path: Path) -> Watchdogs:
    return Watchdogs(tmp_path)


def test_softdog_is_disarmed_once_pid1_holds_the_hardware_watchdog(wd: Watchdogs) -> None:
    wd.add("watchdog0", "i6300ESB timer", "active")
    wd.add("watchdog1", SOFT)
    wd.link("watchdog0")
    run = wd.run()
    assert run.rc == 0, run.out
    assert run.written == {"watchdog0": "", "watchdog1": "V"}  # the hardware one untouched
    assert run.log == (
        "mynabox: softdog: disarmed (watchdog1): PID 1 holds the hardware watchdog 'i6300ESB timer'"
        " (watchdog0)\n"
    )


def test_softdog_registered_first_is_still_the_one_disarmed(wd: Watchdogs) -> None:
    # A Pi whose bcm2835_wdt registered after softdog: softdog is watchdog0, the link names watchdog1.
    wd.add("watchdog0", SOFT)
    wd.add("watchdog1", "Broadcom BCM2835 Watchdog timer", "active")
    wd.link("watchdog1")
    run = wd.run()
    assert run.rc == 0 and run.written == {"watchdog0": "V", "watchdog1": ""}, run.out
    assert "'Broadcom BCM2835 Watchdog timer' (watchdog1)" in run.log


def test_a_hardware_watchdog_not_yet_held_is_waited_for_then_softdog_is_disarmed_anyway(
    wd: Watchdogs,
) -> None:
    # Registered but never opened by PID 1 (inactive) for the whole wait: degrade, say so, no reset loop.
    wd.add("watchdog0", "i6300ESB timer", "inactive")
    wd.add("watchdog1", SOFT)
    wd.link("watchdog0")
    run = wd.run(wait_s=1)
    assert run.rc == 0 and run.written["watchdog1"] == "V", run.out
    assert "disarmed (watchdog1) WITHOUT a hardware watchdog: none active after 1 s (watchdog0)" in run.log


def test_a_box_without_any_hardware_watchdog_disarms_softdog_and_says_so(wd: Watchdogs) -> None:
    wd.add("watchdog0", SOFT)
    run = wd.run(wait_s=1)
    assert run.rc == 0 and run.written == {"watchdog0": "V"}, run.out
    assert "WITHOUT a hardware watchdog: none active after 1 s (no /dev/watchdog-hw)" in run.log


def test_a_link_to_softdog_itself_is_not_taken_for_the_hardware_watchdog(wd: Watchdogs) -> None:
    wd.add("watchdog0", SOFT, "active")  # opened by someone: still not a hardware watchdog
    wd.link("watchdog0")
    run = wd.run(wait_s=1)
    assert run.rc == 0 and run.written == {"watchdog0": "V"}, run.out
    assert "WITHOUT a hardware watchdog" in run.log


def test_no_softdog_writes_nothing(wd: Watchdogs) -> None:
    wd.add("watchdog0", "i6300ESB timer", "active")
    wd.link("watchdog0")
    run = wd.run()
    assert run.rc == 0 and run.written == {"watchdog0": ""}, run.out
    assert "no software watchdog registered: nothing to disarm" in run.log


def test_softdog_that_cannot_be_opened_is_said_loudly_and_fails_the_unit(wd: Watchdogs) -> None:
    wd.add("watchdog0", "i6300ESB timer", "active")
    wd.add("watchdog1", SOFT, node=False)  # its node missing: the open fails
    wd.link("watchdog0")
    run = wd.run()
    assert run.rc == 1, run.out
    assert "could NOT disarm watchdog1" in run.log and "it will reset this box" in run.log
