"""The last update result on the state partition (mynabox.update.lastresult), written whole or not at all,
and the lock `mynabox update install` holds while it runs.

The lock closes a race seen on the emulated box: RAUC makes the other slot primary (our backend's
`set-primary`) before its own last steps, and the install command keeps its result only after RAUC
returns; the daemon, which switches as soon as the primary slot is not the booted one, rebooted 60 ms
before RAUC had finished. While the lock is held the daemon does not switch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mynabox.adapters.files import write_atomic
from mynabox.update import lastresult

NAME = "update-result.json"
LOCK = "update-install.lock"


def write(state_dir: Path, result: lastresult.Result) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(state_dir / NAME, result.encode().encode(), mode=0o644)


def read(state_dir: Path) -> lastresult.Result | None:
    try:
        with (state_dir / NAME).open("rb") as f:
            return lastresult.parse(f.read(lastresult.MAX_BYTES + 1).decode("utf-8", "replace"))
    except OSError:
        return None


@contextlib.contextmanager
def installing(state_dir: Path) -> Iterator[None]:
    """An exclusive flock on the install lock for the block (a second install waits for the first). Not
    followed if it is a symbolic link (the directory is the daemon's user's); the file stays, empty."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def install_running(state_dir: Path) -> bool:
    """True while an install holds the lock (a shared flock that cannot be had at once)."""
    try:
        fd = os.open(state_dir / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # no install has run (or the lock is not ours to read): nothing holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False
