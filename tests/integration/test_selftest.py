"""`mynabox selftest` as a subprocess against the real stack, with failures injected for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mynabox.testing.stack import BoxStack

pytestmark = pytest.mark.stack
MYNABOX = str(Path(".venv/bin/mynabox").resolve())


def selftest(stack: BoxStack) -> tuple[int, dict[str, str]]:
    env = dict(os.environ, **stack.env())
    out = subprocess.run(
        [MYNABOX, "selftest", "--config", str(stack.config_path), "--timeout", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = {}
    for line in out.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("ok", "FAIL"):
            lines[rest.split(":")[0].strip()] = verdict
    return out.returncode, lines


def test_selftest_on_the_stack_and_with_parts_down(tmp_path: Path) -> None:
    with BoxStack(device_id="amb-selftest", workdir=tmp_path / "stack") as stack:
        assert stack.broker is not None and stack.refsvc is not None
        code, lines = selftest(stack)
        for part in ("config", "reader", "display", "outbox", "disk", "summary service", "broker"):
            assert lines.get(part) == "ok", (part, lines)
        assert code == (0 if lines.get("clock") == "ok" else 1)
        stack.broker.stop()
        stack.refsvc.stop()
        code, lines = selftest(stack)
        assert code == 1
        assert lines["broker"] == "FAIL" and lines["summary service"] == "FAIL"
        assert lines["reader"] == "ok"
        stack.broker.start()
