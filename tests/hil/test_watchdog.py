"""The hardware watchdog resets a hung box (optional: `parts.watchdog = true`; asks before it reboots).

The check arms the hardware watchdog (the image's udev link /dev/watchdog-hw, else /dev/watchdog), pings once
and then hangs on purpose: never /dev/watchdog on the image, which may be the boot's softdog if it
registered first. The report is written after every check,
so the run up to here is on disk; a marker with the boot id lets the next `make hil` confirm the reset.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .bench import Bench
from .prompts import Operator

pytestmark = [
    pytest.mark.hil,
    pytest.mark.needs("watchdog"),
    pytest.mark.hardware_only("no hardware watchdog"),
]
WDIOC_GETTIMEOUT = 0x80045707
MARKER = "watchdog-armed.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
HARDWARE = Path("/dev/watchdog-hw")  # the image's udev link (60-mynabox-watchdog.rules)


@pytest.mark.check("watchdog: a reset armed by an earlier run confirmed")
def test_watchdog_reset_confirmed_from_an_earlier_run(run: Any, fact: Callable[[str, object], None]) -> None:
    if run.reports is None:
        pytest.skip("no report directory")
    boot = BOOT_ID.read_text().strip()
    for marker in sorted(run.reports.parent.glob(f"*/{MARKER}")):
        armed = json.loads(marker.read_text())
        if armed.get("boot_id") != boot and not armed.get("confirmed"):
            armed["confirmed"] = datetime.now(UTC).isoformat(timespec="seconds")
            marker.write_text(json.dumps(armed))
            fact(
                "watchdog reset",
                f"run {marker.parent.name} armed it at {armed['armed_at']}; the box rebooted",
            )
            return
    pytest.skip("no earlier run armed the watchdog and rebooted")


@pytest.mark.check("watchdog: resets a hung box (reboots it)")
def test_watchdog_resets_a_hung_box(bench: Bench, run: Any, operator: Operator) -> None:
    if not operator.yes(
        "this check REBOOTS the box through its hardware watchdog (run `make hil` again after); go ahead?"
    ):
        pytest.skip("the technician declined the reboot")
    node = HARDWARE if HARDWARE.exists() else Path("/dev/watchdog")
    try:
        fd = os.open(node, os.O_WRONLY)
    except OSError as err:
        pytest.fail(f"{node}: {err} (systemd's RuntimeWatchdogSec= may hold it: test that with the image)")
    timeout = struct.unpack("i", fcntl.ioctl(fd, WDIOC_GETTIMEOUT, struct.pack("i", 0)))[0]
    if run.reports is not None:
        (run.reports / MARKER).write_text(
            json.dumps(
                {
                    "boot_id": BOOT_ID.read_text().strip(),
                    "armed_at": datetime.now(UTC).isoformat(),
                    "timeout_s": timeout,
                }
            )
        )
        os.sync()
    os.write(fd, b"\0")  # one ping, then never again (and never the magic close 'V')
    time.sleep(timeout + 30)
    pytest.fail(
        f"still running {timeout + 30} s after the last ping: "
        f"the watchdog ({timeout} s) did not reset the box"
    )
