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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

IDLE_S = 15 * 60
HEALTH_LIMIT_S = 5 * 60


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class HealthCheck:
    booted_at: float
    limit_s: float = HEALTH_LIMIT_S
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

    def _settle(self, state: HealthCheck) -> tuple[HealthCheck, Action]:
        if state.verdict is Health.WAITING and state.ready and state.selftest_passed:
            return replace(state, verdict=Health.GOOD, reason=""), Action.MARK_GOOD
        return state, Action.NONE
