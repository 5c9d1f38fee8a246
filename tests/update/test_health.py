"""The health check's reading of `mynabox selftest` (required parts only; a missing network is no failure)
and of `systemctl show` on the daemon's unit."""

from __future__ import annotations

import pytest

from mynabox.update.health import MAX_SHOW, UnitStateError, parse_show, selftest_verdict
from mynabox.update.policy import UnitState

PARTS = ("config: /etc/mynabox/config.toml", "reader", "display", "panel", "outbox", "disk")
ALL_OK = "".join(f"ok   {name}\n" for name in PARTS)


def test_required_parts_pass_and_the_network_may_be_away() -> None:
    text = ALL_OK + "FAIL clock: not synced\nFAIL summary service: timed out\nFAIL broker: refused\n"
    assert selftest_verdict(text, 1) == (True, "")


def test_a_failed_or_missing_required_part_fails_with_its_reason() -> None:
    assert selftest_verdict(ALL_OK.replace("ok   reader", "FAIL reader: no reader matches 'ACS'"), 1) == (
        False,
        "reader: no reader matches 'ACS'",
    )
    passed, why = selftest_verdict("Traceback (most recent call last):\n", 1)
    assert not passed and "said nothing about config, reader, display, panel, outbox, disk (exit 1)" in why
    passed, why = selftest_verdict(ALL_OK.replace("ok   disk", "FAIL disk: \x1b[2J full"), 1)
    assert not passed and "\x1b" not in why


SHOW = (
    "ActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=3\nExecMainStatus=78\n"
    "ActiveEnterTimestampMonotonic=0\n"
)


def test_systemctl_show_reads_as_the_units_state() -> None:
    assert parse_show(SHOW) == UnitState("activating", "auto-restart", "exit-code", 3, 78, False)
    # Any order, other properties ignored, a timestamp means active once since boot.
    lines = SHOW.replace("ActiveEnterTimestampMonotonic=0", "ActiveEnterTimestampMonotonic=81234567")
    assert parse_show("Id=mynabox.service\n" + "\n".join(reversed(lines.splitlines()))).ever_active


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no ActiveState, SubState, Result, NRestarts, ExecMainStatus, ActiveEnterTimestampMonotonic"),
        (SHOW.replace("NRestarts=3\n", ""), "no NRestarts"),
        (SHOW.replace("NRestarts=3", "NRestarts=-1"), "NRestarts: '-1' is not a count"),
        (SHOW.replace("NRestarts=3", "NRestarts=" + "9" * 30), "is not a count"),
        (SHOW.replace("=activating", "=\x1b[2Jactivating"), "ActiveState: '?[2Jactivating' is not a state"),
        (SHOW + "X=" + "x" * MAX_SHOW, f"more than {MAX_SHOW} characters"),
    ],
)
def test_anything_else_is_refused_with_a_printable_reason(text: str, says: str) -> None:
    with pytest.raises(UnitStateError) as info:
        parse_show(text)
    assert str(info.value) == says or says in str(info.value)
    assert "\x1b" not in str(info.value)
