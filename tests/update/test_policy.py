"""The idle-switch rule and the health check after a boot."""

from __future__ import annotations

import pytest

from mynabox.update.policy import HEALTH_LIMIT_S, IDLE_S, Action, Activity, Health, HealthCheck, idle_reason

NOW = 10_000.0


@pytest.mark.parametrize(
    ("activity", "busy"),
    [
        (Activity(card_present=False, last_read_at=None, outbox_depth=0), None),
        (Activity(card_present=False, last_read_at=NOW - IDLE_S, outbox_depth=0), None),
        (Activity(card_present=True, last_read_at=None, outbox_depth=0), "a card is on the reader"),
        (
            Activity(card_present=False, last_read_at=NOW - IDLE_S + 1, outbox_depth=0),
            "a card was read 899 s ago",
        ),
        (
            Activity(card_present=False, last_read_at=NOW - 3600, outbox_depth=2),
            "2 message(s) still in the outbox",
        ),
    ],
)
def test_the_box_switches_only_when_idle(activity: Activity, busy: str | None) -> None:
    reason = idle_reason(activity, NOW)
    assert (reason is None) == (busy is None)
    if busy is not None:
        assert reason is not None and reason.startswith(busy)


def test_ready_and_a_passing_selftest_within_the_limit_mark_the_slot_good() -> None:
    check = HealthCheck(booted_at=0.0)
    check, action = check.on_selftest(False, "reader missing")  # too early: retried
    assert (check.verdict, action) == (Health.WAITING, Action.NONE)
    check, action = check.on_ready()
    assert action is Action.NONE
    check, action = check.on_selftest(True)
    assert (check.verdict, action) == (Health.GOOD, Action.MARK_GOOD)
    assert check.on_tick(HEALTH_LIMIT_S + 1, other_slot_bootable=True)[1] is Action.NONE  # decided once


def test_no_ready_within_the_limit_rolls_back_at_once() -> None:
    check = HealthCheck(booted_at=100.0)
    assert check.on_tick(100.0 + HEALTH_LIMIT_S - 1, other_slot_bootable=True)[1] is Action.NONE
    check, action = check.on_tick(100.0 + HEALTH_LIMIT_S, other_slot_bootable=True)
    assert (check.verdict, action) == (Health.FAILED, Action.ROLLBACK_NOW)
    assert check.reason == "not READY, self-test not passed after 300 s"


def test_ready_but_failing_selftest_rolls_back_when_idle() -> None:
    check, _ = HealthCheck(booted_at=0.0).on_ready()
    check, _ = check.on_selftest(False, "display not found")
    check, action = check.on_tick(HEALTH_LIMIT_S, other_slot_bootable=True)
    assert action is Action.ROLLBACK_WHEN_IDLE
    assert check.reason == "self-test not passed (display not found) after 300 s"


def test_with_no_other_slot_it_stays_up_and_reports() -> None:
    check, action = HealthCheck(booted_at=0.0).on_tick(HEALTH_LIMIT_S, other_slot_bootable=False)
    assert (check.verdict, action) == (Health.FAILED, Action.STAY)
