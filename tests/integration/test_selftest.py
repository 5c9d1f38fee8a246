"""`mynabox selftest` as a subprocess against the real stack, with failures injected for real."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.daemon import MYNABOX

pytestmark = pytest.mark.stack


def selftest(stack: BoxStack) -> tuple[int, dict[str, str]]:
    code, lines, _out = selftest_out(stack)
    return code, lines


def selftest_out(stack: BoxStack) -> tuple[int, dict[str, str], str]:
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
    return out.returncode, lines, out.stdout


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


def test_selftest_reader_check_ends_on_a_card_that_answers_nothing(tmp_path: Path) -> None:
    """A card left on the reader is read by the reader check; one that answers its ATR and then nothing
    fails the check within its bound (before: the check never touched the card; a read would hang)."""
    with BoxStack(device_id="amb-selftest", workdir=tmp_path / "stack") as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        stack.pcscd.wait_empty()
        good = VirtualMyNumberCard(patient("healthy").card_id)
        with VpcdCardServer(good, port=stack.pcscd.vpcd_port):
            time.sleep(1.0)  # pcscd's presence poll
            _code, lines, out = selftest_out(stack)
        assert lines["reader"] == "ok" and "card on it answers (my-number-card" in out, out
        stack.pcscd.wait_empty()
        silent = VirtualMyNumberCard(patient("healthy").card_id, faults=Faults(silent_after=0))
        with VpcdCardServer(silent, port=stack.pcscd.vpcd_port):
            time.sleep(1.0)
            started = time.monotonic()
            code, lines, out = selftest_out(stack)
            took = time.monotonic() - started
        assert code == 1 and lines["reader"] == "FAIL", out
        assert "gave no answer within 3 s (take it away)" in out
        assert silent.apdu_count == 1 and took < 20, took
