"""The kernel's log since boot as the bench reads it (/dev/kmsg records: "prio,seq,usec,flags;text"), and
when the hardware watchdog's driver came up: on a Pi `bcm2835_wdt`, which must find the PM watchdog a trial
boot's stage armed (15 s at most) before it fires; under qemu the i6300esb (its early watchdog: 120 s)."""

from __future__ import annotations

import os
import re
from pathlib import Path

KMSG = Path("/dev/kmsg")
# The drivers' own lines (drivers/watchdog/bcm2835_wdt.c, i6300esb.c of 6.12) → the measurement's name.
DRIVERS = (
    (re.compile(r"Broadcom BCM2835 watchdog timer"), "kernel_to_bcm2835_wdt_s"),
    (re.compile(r"i6300ESB timer \S+: initialized"), "kernel_to_i6300esb_s"),
)
MAX_RECORDS = 100_000  # a ring buffer holds far fewer; a bound for a device that never says EAGAIN


def records(raw: list[bytes]) -> list[tuple[float, str]]:
    """(seconds since the kernel started, text) of each well-formed record; others are skipped."""
    out = []
    for record in raw:
        head, sep, text = record.decode("utf-8", "replace").partition(";")
        fields = head.split(",")
        if sep and len(fields) >= 3 and fields[2].isdigit():
            out.append((int(fields[2]) / 1e6, text.split("\n", 1)[0]))
    return out


def driver_up(log: list[tuple[float, str]]) -> tuple[str, float] | None:
    """The first hardware watchdog driver's line: (measurement name, seconds since the kernel started)."""
    for at, text in log:
        for pattern, name in DRIVERS:
            if pattern.search(text):
                return name, at
    return None


def read(path: Path = KMSG) -> list[tuple[float, str]]:
    """Every record the ring buffer still holds (root; reading never blocks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    raw = []
    try:
        while len(raw) < MAX_RECORDS:
            try:
                raw.append(os.read(fd, 8192))
            except BlockingIOError:
                break
            except BrokenPipeError:  # a record overwritten while reading: go on with the next
                continue
    finally:
        os.close(fd)
    return records(raw)
