"""What systemd says of the daemon's unit, for the health check's fail-fast rules (mynabox.update.policy).

A subprocess, `systemctl show -p …` by default (another command for tests, or another manager: it must print
the same `KEY=VALUE` lines), bounded in time and size. Every failure — no such program, a hang, an exit code,
an answer that does not parse — comes out as UnitStateError with a printable reason, never as anything else:
the check then only misses the shortcut and still has its limit.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from mynabox.update.health import MAX_SHOW, SHOW_PROPERTIES, UnitStateError, parse_show
from mynabox.update.policy import UnitState
from mynabox.update.text import printable

DAEMON_UNIT = "mynabox.service"
DEFAULT_COMMAND = ("systemctl", "show", "-p", ",".join(SHOW_PROPERTIES), DAEMON_UNIT)


class UnitQuery:
    def __init__(self, command: Sequence[str] = DEFAULT_COMMAND, timeout: float = 30.0) -> None:
        self.command = tuple(command)
        self._timeout = timeout

    def __call__(self) -> UnitState:
        try:
            done = subprocess.run(self.command, capture_output=True, timeout=self._timeout, check=False)
        except subprocess.TimeoutExpired:
            raise UnitStateError(f"no answer in {self._timeout:.0f} s") from None
        except OSError as err:
            raise UnitStateError(printable(f"{self.command[0]}: {err.strerror or err}")) from None
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason"]
            raise UnitStateError(f"exit {done.returncode}: {printable(tail[0])}")
        return parse_show(done.stdout[: MAX_SHOW + 1].decode("utf-8", "replace"))
