"""The two boot-state copies on the FAT partition (bootstate.0, bootstate.1), read and written by the box.

A change reads both copies, takes the newest valid one (mynabox.update.bootstate) and writes the next state
into the other copy only, in place (no truncation, no rename: on FAT a rename or a new file moves directory
entries and clusters, an overwrite of the same 512 bytes does not), then fsyncs it. A copy that is missing
is created and its directory fsynced. Whatever a power cut hits, the copy read is untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mynabox.adapters.files import fsync_dir, write_all
from mynabox.update import bootstate as bs

NAMES = ("bootstate.0", "bootstate.1")


class BootFiles:
    def __init__(self, directory: Path, checkpoint: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self._checkpoint = checkpoint or (lambda _name: None)  # the power-cut tests stop the writer there

    def path(self, index: int) -> Path:
        return self.directory / NAMES[index]

    def read(self) -> bs.Reading:
        return bs.read(self._read_copy(0), self._read_copy(1))

    def _read_copy(self, index: int) -> bytes | None:
        try:
            with self.path(index).open("rb") as f:
                return f.read(bs.SIZE)  # as boot.scr loads it: the first 512 bytes, a shorter file is damaged
        except FileNotFoundError:
            return None

    def change(self, how: Callable[[bs.BootState], bs.BootState]) -> bs.BootState:
        """Apply `how` to the current state and store the result; nothing is written when nothing changes
        and both copies are sound (RAUC marks the booted slot good at every boot)."""
        reading = self.read()
        wanted = how(reading.state)
        if wanted == reading.state and reading.damage is bs.Damage.OK:
            return reading.state
        state = bs.successor(reading, wanted)
        self.write(reading.write_to, state)
        return state

    def write(self, index: int, state: bs.BootState) -> None:
        path = self.path(index)
        data = bs.encode(state)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            created = False
        except FileNotFoundError:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            created = True
        try:
            self._checkpoint("opened")
            os.lseek(fd, 0, os.SEEK_SET)
            write_all(fd, data)
            if os.fstat(fd).st_size != len(data):
                os.ftruncate(fd, len(data))
            self._checkpoint("written")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)
        self._checkpoint("synced")
