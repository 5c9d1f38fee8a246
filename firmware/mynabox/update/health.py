"""What the health check reads from `mynabox selftest` after a boot: the parts the box cannot work without.

Healthy means the daemon reached READY and these checks pass: config, reader, display, panel (both ok where
not configured), outbox (writable), disk. The broker, the summary service and the clock are not required: a
box in a garage without network is healthy when it queues (its outbox is writable), and a rollback for a
missing network would undo a good update. Pure: selftest's output in, a verdict out.
"""

from __future__ import annotations

import re

from mynabox.update.text import printable

REQUIRED = ("config", "reader", "display", "panel", "outbox", "disk")  # panel: ok when disabled
MAX_OUTPUT = 64 * 1024
_LINE = re.compile(r"(ok  |FAIL) ([a-z ]+?)(: (.*))?")


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
