"""UnitQuery: what systemd says of the daemon's unit, from a real subprocess; every failure translated into
UnitStateError with a printable reason (the health check then keeps its limit)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mynabox.adapters.unitquery import UnitQuery
from mynabox.update.health import UnitStateError
from mynabox.update.policy import UnitState

SHOW = (
    "ActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=0\nExecMainStatus=78\n"
    "ActiveEnterTimestampMonotonic=0\n"
)


def test_the_answer_reads_as_the_units_state(tmp_path: Path) -> None:
    (tmp_path / "show").write_text(SHOW)
    assert UnitQuery(["cat", str(tmp_path / "show")])() == UnitState(
        "failed", "failed", "exit-code", 0, 78, False
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["/nonexistent/systemctl"], "/nonexistent/systemctl: No such file or directory"),
        (
            ["sh", "-c", "echo 'Failed to connect to bus: \x1b[2JHost is down' >&2; exit 1"],
            "exit 1: Failed to",
        ),
        (["sh", "-c", "echo ActiveState=active"], "no SubState"),
        ([sys.executable, "-c", "print('A=' + 'x' * 100000)"], "more than 4096 characters"),
        (["sleep", "5"], "no answer in 1 s"),
    ],
)
def test_every_failure_is_a_unit_state_error(command: list[str], says: str) -> None:
    with pytest.raises(UnitStateError) as info:
        UnitQuery(command, timeout=1.0)()
    assert says in str(info.value)
    assert "\x1b" not in str(info.value)
