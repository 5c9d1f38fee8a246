"""The bench's reading of the kernel's log (tests/hil/kmsg.py), on records as /dev/kmsg gives them."""

from __future__ import annotations

import os
from pathlib import Path

from .kmsg import driver_up, read, records
from .measure import judge

PI = [
    b"6,1,0,-;Booting Linux on physical CPU 0x0000000000 [0x410fd083]\n",
    b"6,612,6543210,-;bcm2835-wdt bcm2835-wdt: Broadcom BCM2835 watchdog timer\n",
    b"6,700,9000000,-;softdog: initialized. soft_noboot=0 soft_margin=120 sec\n",
]
QEMU = [
    b"6,340,6548867,-;softdog: initialized. soft_noboot=0 soft_margin=120 sec soft_panic=0 (nowayout=0)\n",
    b"6,351,14335328,-;i6300ESB timer 0000:00:02.0: initialized. heartbeat=30 sec (nowayout=0)\n",
]


def test_the_drivers_line_gives_its_time_since_the_kernel_started() -> None:
    assert driver_up(records(PI)) == ("kernel_to_bcm2835_wdt_s", 6.54321)
    assert driver_up(records(QEMU)) == ("kernel_to_i6300esb_s", 14.335328)
    assert driver_up(records(PI[:1])) is None


def test_hostile_records_are_skipped() -> None:
    junk = [b"", b";no header", b"6,1,notanumber,-;Broadcom BCM2835 watchdog timer", b"\xff\xfe,2,3;x", *PI]
    assert driver_up(records(junk)) == ("kernel_to_bcm2835_wdt_s", 6.54321)


def test_a_pi_whose_driver_comes_late_fails_and_one_near_the_limit_is_marginal() -> None:
    assert judge("kernel_to_bcm2835_wdt_s", 6.5, "t").outcome == "pass"
    assert judge("kernel_to_bcm2835_wdt_s", 9.0, "t").outcome == "marginal"
    assert judge("kernel_to_bcm2835_wdt_s", 13.0, "t").outcome == "fail"  # 15 s armed: too close


def test_read_takes_every_record_and_stops_when_none_is_left(tmp_path: Path) -> None:
    """A FIFO stands in for /dev/kmsg (one record per read as the device gives them is not modelled: the
    FIFO's one read may join them; the reader's loop and its stop at EAGAIN are what is checked)."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(writer, QEMU[1])
        assert read(fifo) == [
            (14.335328, "i6300ESB timer 0000:00:02.0: initialized. heartbeat=30 sec (nowayout=0)")
        ]
    finally:
        os.close(writer)
