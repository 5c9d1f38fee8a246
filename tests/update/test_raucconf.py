"""RAUC's system.conf as the update commands read it: the image's own file and broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from mynabox.update import raucconf
from mynabox.update.bundle import BundleRefused

SYSTEM_CONF = Path(__file__).resolve().parents[2] / "image-build" / "rauc" / "system.conf"


def test_the_images_conf_names_the_board_and_the_slot_an_install_writes() -> None:
    conf = raucconf.parse(SYSTEM_CONF.read_text())
    assert raucconf.compatible(conf) == "mynabox-rpi-arm64"
    assert raucconf.other_slot_device(conf, "A") == "/dev/disk/by-partuuid/6d796e61-03"
    assert raucconf.other_slot_device(conf, "B") == "/dev/disk/by-partuuid/6d796e61-02"


@pytest.mark.parametrize(
    ("text", "booted"),
    [
        (SYSTEM_CONF.read_text(), None),  # no rauc.slot= on the command line
        (SYSTEM_CONF.read_text(), "C"),  # a bootname no slot has: two others
        ("[slot.rootfs.0]\ndevice=/dev/a\nbootname=A\n", "A"),  # no other slot
        ("[slot.rootfs.0]\ndevice=/dev/a\nbootname=A\n[slot.rootfs.1]\nbootname=B\n", "A"),  # no device
    ],
)
def test_an_unknown_other_slot_is_refused(text: str, booted: str | None) -> None:
    with pytest.raises(BundleRefused, match="cannot be told from the booted one"):
        raucconf.other_slot_device(raucconf.parse(text), booted)
