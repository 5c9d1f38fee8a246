"""SlotWatch (the daemon's view of the booted slot and the boot state) and Reboot on real files."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mynabox.adapters import updatefiles
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


@pytest.mark.parametrize(
    ("word", "state", "said"),
    [
        ("mynabox.bootstate=ok", "ok", None),
        ("mynabox.bootstate=copy0-bad", "copy0-bad", "it booted from the other copy"),
        ("mynabox.bootstate=both-bad", "both-bad", "both copies bad, it booted the default order A B"),
        ("", None, None),  # not booted by boot.scr: nothing to say
    ],
)
def test_damaged_boot_state_found_by_boot_scr_is_said_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, word: str, state: str | None, said: str | None
) -> None:
    (tmp_path / "cmdline").write_text(f"ro rauc.slot=A {word}\n")
    watch = SlotWatch(tmp_path, tmp_path / "cmdline")
    assert watch.boot_state() == state
    with caplog.at_level(logging.WARNING):
        watch.report_boot_state()
    lines = [r.getMessage() for r in caplog.records if "boot state damaged" in r.getMessage()]
    assert lines == (
        []
        if said is None
        else [f"update: boot.scr found the boot state damaged at this boot ({state}): {said}"]
    )


def test_no_switch_while_an_install_holds_its_lock(tmp_path: Path) -> None:
    # Seen on the emulated box: RAUC made B primary, the daemon rebooted 60 ms before RAUC had finished
    # and before the install kept its result. The lock is held by another process, as the install command is.
    BootFiles(tmp_path).write(0, bs.set_primary(bs.INITIAL, "B"))
    (tmp_path / "cmdline").write_text("ro rauc.slot=A mynabox.bootstate=ok\n")
    watch = SlotWatch(tmp_path, tmp_path / "cmdline", tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib\nfrom mynabox.adapters import updatefiles\n"
         f"with updatefiles.installing(pathlib.Path({str(tmp_path)!r})):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert not watch.pending()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert watch.pending()  # released: the update waits for the idle switch again
    assert (tmp_path / updatefiles.LOCK).stat().st_mode & 0o777 == 0o644


def test_the_lock_is_not_followed_through_a_symbolic_link(tmp_path: Path) -> None:
    # The state directory is the daemon's user's: a link planted there must not make root write elsewhere.
    target = tmp_path / "elsewhere"
    target.write_text("kept")
    (tmp_path / updatefiles.LOCK).symlink_to(target)
    with pytest.raises(OSError), updatefiles.installing(tmp_path):
        pass
    assert target.read_text() == "kept"
    assert not updatefiles.install_running(tmp_path)


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
