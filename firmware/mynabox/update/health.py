"""What the health check reads from `mynabox selftest` after a boot: the parts the box cannot work without.

Healthy means the daemon reached READY and these checks pass: config, reader, display, panel (both ok where
not configured), outbox (writable), disk. The broker, the summary service and the clock are not required: a
box in a garage without network is healthy when it queues (its outbox is writable), and a rollback for a
missing network would undo a good update. Pure: selftest's output in, a verdict out.

It also reads what systemd says of the daemon's unit (`systemctl show -p` with `SHOW_PROPERTIES`), for the
fail-fast rules of mynabox.update.policy: hostile text in, a `UnitState` or `UnitStateError` out.
"""

from __future__ import annotations

import re

from mynabox.update.policy import UnitState
from mynabox.update.text import printable

REQUIRED = ("config", "reader", "display", "panel", "outbox", "disk")  # panel: ok when disabled
MAX_OUTPUT = 64 * 1024
_LINE = re.compile(r"(ok  |FAIL) ([a-z ]+?)(: (.*))?")
SHOW_PROPERTIES = (
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "ExecMainStatus",
    "ActiveEnterTimestampMonotonic",
)
MAX_SHOW = 4096
_WORD = re.compile(r"[a-z][a-z0-9-]{0,40}")
_COUNT = re.compile(r"[0-9]{1,20}")


class UnitStateError(ValueError):
    pass


def selftest_verdict(output: str, exit_code: int) -> tuple[bool, str]:
    """(passed, why not) from selftest's lines `ok   NAME` / `FAIL NAME: reason`."""
    seen: dict[str, str | None] = {}
    for line in output[:MAX_OUTPUT].splitlines():
        match = _LINE.fullmatch(line.rstrip())
        if match:
            seen[match.group(2)] = None if match.group(1) == "ok  " else (match.group(4) or "failed")
    missing = [name for name in REQUIRED if name not in seen]
    failed = [f"{name}: {seen[name]}" for name in REQUIRED if seen.get(name)]
    if failed:
        return False, printable("; ".join(failed), 200)
    if missing:
        return False, f"self-test said nothing about {', '.join(missing)} (exit {exit_code})"
    return True, ""


def parse_show(text: str) -> UnitState:
    """`systemctl show -p ActiveState,SubState,…` (`KEY=VALUE` lines) as a UnitState; UnitStateError (with
    a printable reason) for anything else: a missing property, a value not a word or a count."""
    if len(text) > MAX_SHOW:
        raise UnitStateError(f"more than {MAX_SHOW} characters")
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in SHOW_PROPERTIES:
            values[key] = value.strip()
    missing = [key for key in SHOW_PROPERTIES if key not in values]
    if missing:
        raise UnitStateError(f"no {', '.join(missing)} in its answer")
    for key in ("ActiveState", "SubState", "Result"):
        if not _WORD.fullmatch(values[key]):
            raise UnitStateError(f"{key}: {printable(values[key], 40)!r} is not a state")
    for key in ("NRestarts", "ExecMainStatus", "ActiveEnterTimestampMonotonic"):
        if not _COUNT.fullmatch(values[key]):
            raise UnitStateError(f"{key}: {printable(values[key], 40)!r} is not a count")
    return UnitState(
        active=values["ActiveState"],
        sub=values["SubState"],
        result=values["Result"],
        restarts=int(values["NRestarts"]),
        exit_status=int(values["ExecMainStatus"]),
        ever_active=int(values["ActiveEnterTimestampMonotonic"]) > 0,
    )
