"""SlotWatch (the daemon's view of the booted slot and the boot state) and Reboot on real files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.adapters.updater import Reboot, SlotWatch
from mynabox.update import bootstate as bs


def test_an_installed_update_is_pending(tmp_path: Path) -> None:
    BootFiles(tmp_path).write(0, bs.set_primary(bs.INITIAL, "B"))
    (tmp_path / "cmdline").write_text("ro rauc.slot=A mynabox.bootstate=ok\n")
    watch = SlotWatch(tmp_path, tmp_path / "cmdline")
    assert watch.booted() == "A"
    assert watch.pending()


def test_an_unreadable_command_line_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The image's unit left the copy unreadable for the daemon: it never switched, and said nothing.
    BootFiles(tmp_path).write(0, bs.set_primary(bs.INITIAL, "B"))
    watch = SlotWatch(tmp_path, tmp_path / "missing")
    with caplog.at_level(logging.WARNING):
        assert not watch.pending()
        assert not watch.pending()
    said = [r.getMessage() for r in caplog.records if "booted slot cannot be read" in r.getMessage()]
    assert len(said) == 1


def test_the_reboot_says_whether_it_goes_into_an_update_or_back_from_a_bad_slot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Both reboot into the primary slot; the log told them apart only by the reason, and called a rollback
    # "rebooting into the installed slot".
    files = BootFiles(tmp_path)
    (tmp_path / "cmdline").write_text("ro rauc.slot=A mynabox.bootstate=ok\n")
    watch = SlotWatch(tmp_path, tmp_path / "cmdline")
    reboot = Reboot(["/bin/true"], watch.destination)
    files.write(0, bs.set_primary(bs.INITIAL, "B"))  # an install made B primary
    with caplog.at_level(logging.WARNING):
        reboot("idle")
    assert caplog.messages[-1] == "update: rebooting into the installed slot B (idle)"
    assert watch.other_bootable()
    # Booted B, the health check marked it bad: the same reboot is a rollback to A.
    (tmp_path / "cmdline").write_text("ro rauc.slot=B mynabox.bootstate=ok\n")
    files.change(lambda state: bs.set_state(state, "B", False))
    with caplog.at_level(logging.WARNING):
        reboot("slot B failed its health check")
    assert caplog.messages[-1] == (
        "update: rebooting back to slot A, the previous one: slot B was marked bad (a rollback)"
        " (slot B failed its health check)"
    )
    assert watch.other_bootable()
    files.change(lambda state: bs.set_state(state, "A", False))
    assert not watch.other_bootable()  # nowhere to go back to
