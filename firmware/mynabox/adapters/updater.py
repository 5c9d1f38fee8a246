"""The daemon's side of an installed update: is one waiting for the switch, and the reboot into it.

An install (RAUC, through our bootloader backend) makes the other slot primary in the boot state; the box
booted the slot `rauc.slot=` names on its kernel command line. When those differ an update waits. A box not
booted by boot.scr (no `rauc.slot=`: a developer's machine) never has one. The reboot is systemd's
(`systemctl reboot`, the configured command), which stops the daemon as for any shutdown.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from mynabox.adapters import updatefiles
from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs

log = logging.getLogger(__name__)


class SlotWatch:
    def __init__(self, boot_dir: Path, cmdline: Path, state_dir: Path | None = None) -> None:
        self._files = BootFiles(boot_dir)
        self._cmdline = cmdline
        self._state_dir = state_dir  # where `update install` holds its lock while it runs
        self._complained = False
        self._cmdline_complained = False

    def booted(self) -> str | None:
        cmdline = self._read_cmdline()
        return None if cmdline is None else bs.booted_slot(cmdline)

    def boot_state(self) -> str | None:
        """What boot.scr found in the boot state at this boot (ok, copy0-bad, copy1-bad, both-bad); None on
        a box not booted by boot.scr."""
        cmdline = self._read_cmdline()
        damage = None if cmdline is None else bs.boot_damage(cmdline)
        return None if damage is None else damage.value

    def report_boot_state(self) -> None:
        """Says at start when boot.scr found a boot-state copy damaged: with both bad it booted RAUC's
        default order, maybe not the slot last chosen; with one bad, the state before the last write."""
        state = self.boot_state()
        if state not in (None, bs.Damage.OK.value):
            log.warning(
                "update: boot.scr found the boot state damaged at this boot (%s): %s",
                state,
                "both copies bad, it booted the default order A B"
                if state == bs.Damage.BOTH_BAD.value
                else "it booted from the other copy",
            )

    def _read_cmdline(self) -> str | None:
        try:
            with self._cmdline.open("rb") as f:
                return f.read(64 * 1024).decode("utf-8", "replace")
        except OSError as err:
            # Said once: unread, an installed update would wait for the next power-on without a word.
            if not self._cmdline_complained:
                log.warning("update: the booted slot cannot be read (%s): no switch at idle", err)
                self._cmdline_complained = True
            return None

    def pending(self) -> bool:
        """True when the slot to boot next is not the one running and no install runs any more (RAUC makes
        the other slot primary before its last steps, the install keeps its result after them)."""
        booted = self.booted()
        if booted is None:
            return False
        if self._state_dir is not None and updatefiles.install_running(self._state_dir):
            return False
        try:
            primary = bs.get_primary(self._files.read().state)
        except (OSError, bs.BootStateError) as err:
            if not self._complained:
                log.warning("update: the boot state cannot be read (%s)", err)
                self._complained = True
            return False
        self._complained = False
        return primary is not None and primary != booted

    def other_bootable(self) -> bool:
        """The slot not booted is in the boot order with tries left (somewhere to go back to)."""
        booted = self.booted()
        if booted is None:
            return False
        try:
            return bs.get_state(self._files.read().state, "B" if booted == "A" else "A")
        except (OSError, bs.BootStateError):
            return False

    def destination(self) -> str:
        """Where a reboot now goes, in words: into an installed update, or back from a slot marked bad."""
        booted = self.booted()
        try:
            state = self._files.read().state
        except (OSError, bs.BootStateError) as err:
            return f"into the primary slot (the boot state cannot be read: {err})"
        primary = bs.get_primary(state)
        if primary is None:
            return "with no slot left to boot (U-Boot's default order)"
        if booted is None or primary == booted:
            return f"into slot {primary}, the one running"
        if bs.get_state(state, booted):
            return f"into the installed slot {primary}"
        return f"back to slot {primary}, the previous one: slot {booted} was marked bad (a rollback)"


class Reboot:
    """Carries out RebootForUpdate and the health check's rollback: the configured command (systemd's
    reboot), bounded in time. `destination` (SlotWatch.destination) says where the reboot goes: an update
    and a rollback both reboot into the primary slot, and the log must tell them apart."""

    def __init__(self, command: Sequence[str], destination: Callable[[], str] | None = None) -> None:
        self.command = tuple(command)
        self._destination = destination

    def __call__(self, reason: str) -> None:
        where = self._destination() if self._destination is not None else "into the primary slot"
        log.warning("update: rebooting %s (%s)", where, reason)
        try:
            done = subprocess.run(self.command, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.error("update: the reboot could not be asked for (%s)", err)
            return
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason"]
            log.error("update: the reboot command failed (exit %d: %s)", done.returncode, tail[0][:200])
