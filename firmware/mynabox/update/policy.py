"""When the box may switch to a new slot, and whether the slot it booted is healthy. Pure: inputs and a
monotonic `now` (seconds) in, decisions out; the updater service feeds them and carries out the effects.

Never during a transport: `rauc install` writes the other slot and makes it primary, but the box reboots
into it only when idle — no card on the reader, no read for `idle_s` (15 min), the outbox empty. A box
that is never idle that long switches at its next power-on anyway, since the new slot is already primary.

Health: after every boot the slot must reach READY and pass its self-test within `limit_s` (5 min); then it
is marked good (RAUC gives its tries back). Otherwise it is marked bad — out of BOOT_ORDER — and the box
reboots into the other slot, if that one is bootable; a box with no other slot stays up and says so. The
rollback reboot waits for idle too when the daemon is READY (it may be reading cards); a daemon that never
got READY has nothing to interrupt. A slot that does not boot at all or hangs is caught earlier: U-Boot's
tries run out, or the hardware watchdog resets it and spends another try.

Fail fast: a daemon that is plainly dead before READY does not get the whole limit. mynabox.service restarts
forever (Restart=always, no start limit) except on exit 78, the config or a key refused, where it stays
failed; so its unit (`UnitState`, what systemd says of it) failed for good, or restarted `max_restarts` times
without ever having been active since boot, rolls the slot back at once (`DEAD_RULES`). A daemon merely slow
to start (activating, few restarts) still gets the whole limit.

A daemon hung before READY is ended by the unit's TimeoutStartSec= (the watchdog runs only once READY),
then restarted and counted like a crash, so the same count catches it: `max_restarts` start timeouts.
Result=timeout itself cannot be counted: systemd shows it only until the restart (RestartSec=), and the
next start says success again, so a look every few seconds misses most of them. The unit's timeout is what
makes a hang cost a few minutes (systemd/README.md sizes it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace

from mynabox.record import record

IDLE_S = 15 * 60
HEALTH_LIMIT_S = 5 * 60
MAX_RESTARTS = 3  # restarts without ever being active before the daemon counts as dead
EX_CONFIG = 78  # sysexits' EX_CONFIG: the daemon refused its config or a key file (RestartPreventExitStatus)


@record
class Activity:
    card_present: bool
    last_read_at: float | None  # monotonic seconds of the last read's end, None: none since boot
    outbox_depth: int


def idle_reason(activity: Activity, now: float, idle_s: float = IDLE_S) -> str | None:
    """Why the box is not idle, or None when it may reboot now."""
    if activity.card_present:
        return "a card is on the reader"
    if activity.last_read_at is not None and now - activity.last_read_at < idle_s:
        return f"a card was read {int(now - activity.last_read_at)} s ago (idle after {int(idle_s)} s)"
    if activity.outbox_depth > 0:
        return f"{activity.outbox_depth} message(s) still in the outbox"
    return None


@record
class UnitState:
    """What systemd says of the daemon's unit (`systemctl show`'s properties of the same names)."""

    active: str  # ActiveState: active, activating, failed, inactive, …
    sub: str  # SubState: running, start, auto-restart, failed, dead, …
    result: str  # Result of the last run: success, exit-code, signal, core-dump, timeout, watchdog, …
    restarts: int  # NRestarts: automatic restarts since the unit was started
    exit_status: int  # ExecMainStatus: the last exit code, or the signal's number
    ever_active: bool  # ActiveEnterTimestampMonotonic > 0: active at least once since the manager started


def last_exit(unit: UnitState) -> str:
    """How the daemon's last run ended, in words."""
    if unit.result == "exit-code":
        return f"exit {unit.exit_status}" + (
            ": its config or a key refused" if unit.exit_status == EX_CONFIG else ""
        )
    if unit.result in ("signal", "core-dump"):
        return f"killed by signal {unit.exit_status}"
    if unit.result == "timeout":
        return "its start timed out"
    if unit.result == "watchdog":
        return "its watchdog expired"
    if unit.result == "success":
        return "now starting again"  # a new start resets Result: how the last one ended is not said
    return unit.result or "no result"


# Each row: (when the daemon is dead, why), tried in order; none matching: it may be slow, wait.
DeadRule = tuple[Callable[[UnitState, int], bool], Callable[[UnitState], str]]
DEAD_RULES: tuple[DeadRule, ...] = (
    # Failed for good: not "failed-before-auto-restart" (systemd ≥ 254 passes through it on a restart).
    (
        lambda u, _: u.active == "failed" and u.sub == "failed",
        lambda u: f"the daemon failed ({last_exit(u)}) and is not restarted",
    ),
    (
        lambda u, most: u.restarts >= most,
        lambda u: f"the daemon restarted {u.restarts} times without becoming active ({last_exit(u)})",
    ),
)


def daemon_dead(unit: UnitState, max_restarts: int = MAX_RESTARTS) -> str | None:
    """Why the daemon will not reach READY however long the check waits, or None (it may be slow)."""
    if unit.ever_active or unit.active == "active":
        return None  # it got READY once: the ready/self-test rules decide
    for dead, why in DEAD_RULES:
        if dead(unit, max_restarts):
            return why(unit)
    return None


class Health(enum.Enum):
    WAITING = "waiting"
    GOOD = "good"
    FAILED = "failed"


class Action(enum.Enum):
    NONE = "none"
    MARK_GOOD = "mark-good"  # rauc status mark-good booted
    ROLLBACK_NOW = "rollback-now"  # mark-bad booted, reboot
    ROLLBACK_WHEN_IDLE = "rollback-when-idle"  # mark-bad booted, reboot once idle_reason() is None
    STAY = "stay"  # unhealthy, but no other slot to go to: keep running, report


@record
class HealthCheck:
    booted_at: float
    limit_s: float = HEALTH_LIMIT_S
    max_restarts: int = MAX_RESTARTS
    ready: bool = False
    selftest_passed: bool = False
    verdict: Health = Health.WAITING
    reason: str = ""

    def on_ready(self) -> tuple[HealthCheck, Action]:
        return self._settle(replace(self, ready=True))

    def on_selftest(self, passed: bool, detail: str = "") -> tuple[HealthCheck, Action]:
        # A failed self-test (reader not yet enumerated, say) is retried until the limit; a pass stands.
        state = replace(self, selftest_passed=self.selftest_passed or passed)
        if not passed and detail:
            state = replace(state, reason=detail)
        return self._settle(state)

    def on_tick(self, now: float, other_slot_bootable: bool) -> tuple[HealthCheck, Action]:
        if self.verdict is not Health.WAITING or now - self.booted_at < self.limit_s:
            return self, Action.NONE
        missing = [] if self.ready else ["not READY"]
        if not self.selftest_passed:
            missing.append("self-test not passed" + (f" ({self.reason})" if self.reason else ""))
        failed = replace(
            self, verdict=Health.FAILED, reason=f"{', '.join(missing)} after {int(self.limit_s)} s"
        )
        if not other_slot_bootable:
            return failed, Action.STAY
        return failed, Action.ROLLBACK_WHEN_IDLE if self.ready else Action.ROLLBACK_NOW

    def on_unit(self, unit: UnitState, now: float, other_slot_bootable: bool) -> tuple[HealthCheck, Action]:
        """The daemon's unit as systemd sees it: dead before READY fails the check at once."""
        if self.verdict is not Health.WAITING or self.ready:
            return self, Action.NONE
        dead = daemon_dead(unit, self.max_restarts)
        if dead is None:
            return self, Action.NONE
        failed = replace(
            self, verdict=Health.FAILED, reason=f"{dead}, seen {int(now - self.booted_at)} s into the check"
        )
        return failed, Action.ROLLBACK_NOW if other_slot_bootable else Action.STAY

    def _settle(self, state: HealthCheck) -> tuple[HealthCheck, Action]:
        if state.verdict is Health.WAITING and state.ready and state.selftest_passed:
            return replace(state, verdict=Health.GOOD, reason=""), Action.MARK_GOOD
        return state, Action.NONE
