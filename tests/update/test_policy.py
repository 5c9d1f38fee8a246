"""The idle-switch rule and the health check after a boot, with its fail-fast rules on the daemon's unit."""

from __future__ import annotations

import pytest

from mynabox.update.policy import (
    EX_CONFIG,
    HEALTH_LIMIT_S,
    IDLE_S,
    Action,
    Activity,
    Health,
    HealthCheck,
    UnitState,
    daemon_dead,
    idle_reason,
)

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


def unit(
    active: str = "activating",
    sub: str = "start",
    result: str = "success",
    restarts: int = 0,
    status: int = 0,
    ever_active: bool = False,
) -> UnitState:
    return UnitState(active, sub, result, restarts, status, ever_active)


# The fail-fast rules, row by row: what systemd says of the daemon's unit before READY, and the outcome.
@pytest.mark.parametrize(
    ("state", "action", "reason"),
    [
        (unit(), Action.NONE, ""),  # starting, slowly: the whole limit
        (unit("inactive", "dead"), Action.NONE, ""),  # not started yet
        (unit(sub="auto-restart", result="exit-code", restarts=2, status=1), Action.NONE, ""),
        (
            unit(sub="auto-restart", result="exit-code", restarts=3, status=1),
            Action.ROLLBACK_NOW,
            "the daemon restarted 3 times without becoming active (exit 1), seen 42 s into the check",
        ),
        (
            unit(sub="auto-restart", result="core-dump", restarts=7, status=11),
            Action.ROLLBACK_NOW,
            "the daemon restarted 7 times without becoming active (killed by signal 11)"
            ", seen 42 s into the check",
        ),
        (
            unit(sub="auto-restart", result="timeout", restarts=3),
            Action.ROLLBACK_NOW,
            "the daemon restarted 3 times without becoming active (its start timed out)"
            ", seen 42 s into the check",
        ),
        # Hung before READY: each start ends at TimeoutStartSec= and is restarted; Result=timeout shows only
        # until the restart (RestartSec=), then the next start has Result=success: the count decides.
        (
            unit(sub="start", result="success", restarts=3),
            Action.ROLLBACK_NOW,
            "the daemon restarted 3 times without becoming active (now starting again)"
            ", seen 42 s into the check",
        ),
        (
            unit("failed", "failed", "exit-code", status=EX_CONFIG),
            Action.ROLLBACK_NOW,
            "the daemon failed (exit 78: its config or a key refused) and is not restarted"
            ", seen 42 s into the check",
        ),
        (
            unit("failed", "failed", "watchdog", restarts=1, status=6),
            Action.ROLLBACK_NOW,
            "the daemon failed (its watchdog expired) and is not restarted, seen 42 s into the check",
        ),
        # systemd ≥ 254 passes through failed on its way to a restart: not failed for good.
        (unit("failed", "failed-before-auto-restart", "exit-code", status=1), Action.NONE, ""),
        # Active once since boot: it got READY, so the ready and self-test rules decide, not these.
        (unit("failed", "failed", "exit-code", status=EX_CONFIG, ever_active=True), Action.NONE, ""),
        (unit(sub="auto-restart", restarts=9, ever_active=True), Action.NONE, ""),
        (unit("active", "running", restarts=5), Action.NONE, ""),
    ],
)
def test_a_dead_daemon_fails_the_check_at_once_and_a_slow_one_waits(
    state: UnitState, action: Action, reason: str
) -> None:
    check, got = HealthCheck(booted_at=58.0).on_unit(state, 100.0, other_slot_bootable=True)
    assert got is action
    assert check.verdict is (Health.WAITING if action is Action.NONE else Health.FAILED)
    assert check.reason == reason
    if action is Action.NONE:
        assert daemon_dead(state) is None


def test_a_dead_daemon_with_no_other_slot_stays_and_reports() -> None:
    dead = unit("failed", "failed", "exit-code", status=EX_CONFIG)
    check, action = HealthCheck(booted_at=0.0).on_unit(dead, 5.0, other_slot_bootable=False)
    assert (check.verdict, action) == (Health.FAILED, Action.STAY)


def test_the_restart_count_is_a_setting() -> None:
    looping = unit(sub="auto-restart", result="exit-code", restarts=4, status=1)
    assert HealthCheck(booted_at=0.0, max_restarts=5).on_unit(looping, 1.0, True)[1] is Action.NONE
    assert HealthCheck(booted_at=0.0, max_restarts=4).on_unit(looping, 1.0, True)[1] is Action.ROLLBACK_NOW


def test_the_unit_is_not_asked_once_ready_or_decided() -> None:
    dead = unit("failed", "failed", "exit-code", status=EX_CONFIG)
    ready, _ = HealthCheck(booted_at=0.0).on_ready()  # READY, then failed: the self-test decides
    assert ready.on_unit(dead, 1.0, True) == (ready, Action.NONE)
    failed, _ = HealthCheck(booted_at=0.0).on_unit(dead, 1.0, True)
    assert failed.on_unit(dead, 2.0, True) == (failed, Action.NONE)  # decided once
    assert failed.on_tick(HEALTH_LIMIT_S, True) == (failed, Action.NONE)
