"""The health check after a boot (`mynabox update health`, mynabox-health.service): looks at the daemon until
mynabox.update.policy.HealthCheck decides, then carries the decision out — RAUC marks the slot good, or bad
and the box goes back to the other slot (a reboot now when the daemon never got READY; the daemon's own idle
switch when it did, since it may be reading cards).

Each look: READY yet? then the self-test (retried until it passes or the limit); before READY, what systemd
says of the daemon's unit, so a daemon plainly dead (failed for good, or restarting without ever becoming
active) rolls back at once instead of at the limit. Everything outside comes through `HealthBox` (the command
wires subprocesses, RAUC, the boot state and the result file to it); time through its clock.
"""

from __future__ import annotations

from typing import Protocol

from mynabox.record import record
from mynabox.update import lastresult, policy
from mynabox.update.health import UnitStateError, selftest_verdict
from mynabox.update.policy import Action, UnitState


class HealthBox(Protocol):
    def ready(self) -> bool:
        """The daemon is READY (its unit active)."""

    def unit(self) -> UnitState:
        """What systemd says of the daemon's unit; UnitStateError when it cannot be told."""

    def selftest(self) -> tuple[int, str]:
        """`mynabox selftest` as the daemon runs: its exit code and output."""

    def other_bootable(self) -> bool:
        """The other slot is in the boot order with tries left."""

    def mark(self, good: bool) -> bool:
        """RAUC marks the booted slot good or bad; False when it could not."""

    def last_result(self) -> lastresult.Result | None: ...

    def keep(self, result: str, detail: str) -> None:
        """The update's result for the `state` topic (this firmware's version, now)."""

    def reboot(self, reason: str) -> None: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def say(self, line: str, *, problem: bool = False) -> None: ...


@record
class Settings:
    booted: str  # the slot U-Boot booted (rauc.slot=)
    version: str  # this firmware's
    limit_s: float = policy.HEALTH_LIMIT_S
    interval_s: float = 5.0
    max_restarts: int = policy.MAX_RESTARTS


def run(box: HealthBox, settings: Settings) -> int:
    """0: marked good; 1: not healthy (rolled back, or no other slot) or not marked."""
    booted = settings.booted
    other = "B" if booted == "A" else "A"
    check = policy.HealthCheck(
        booted_at=box.monotonic(), limit_s=settings.limit_s, max_restarts=settings.max_restarts
    )
    box.say(f"health: slot {booted} booted; healthy within {settings.limit_s:.0f} s or back to slot {other}")
    check, action = _watch(box, check, settings.interval_s)

    if action is Action.MARK_GOOD:
        if not box.mark(good=True):
            box.say("health: healthy, but RAUC could not mark the slot good", problem=True)
            return 1
        kept = box.last_result()
        if kept is not None and kept.result == lastresult.INSTALLED and kept.version == settings.version:
            box.keep(lastresult.GOOD, f"slot {booted} healthy")  # the first boot after an install
        box.say(f"health: slot {booted} is healthy: marked good")
        return 0
    box.say(f"health: slot {booted} is not healthy: {check.reason}", problem=True)
    if action is Action.STAY:
        box.say(f"health: slot {other} is not bootable either: staying on {booted}", problem=True)
        return 1
    if not box.mark(good=False):
        box.say("health: RAUC could not mark the slot bad", problem=True)
    box.keep(lastresult.ROLLED_BACK, f"slot {booted}: {check.reason}")
    if action is Action.ROLLBACK_NOW:
        box.say(f"health: rebooting into slot {other} now (the daemon never got READY)", problem=True)
        box.reboot(f"slot {booted} failed its health check")
    else:
        box.say(f"health: slot {other} is primary: the daemon switches when idle", problem=True)
    return 1


def _watch(box: HealthBox, check: policy.HealthCheck, interval_s: float) -> tuple[policy.HealthCheck, Action]:
    unit_unknown = False
    action = Action.NONE
    while action is Action.NONE:
        if not check.ready and box.ready():
            check, action = check.on_ready()
        if check.ready and not check.selftest_passed:
            code, output = box.selftest()
            check, action = check.on_selftest(*selftest_verdict(output, code))
        if action is Action.NONE and not check.ready:
            try:
                unit = box.unit()
            except UnitStateError as err:
                if not unit_unknown:  # said once: the check still has its limit
                    box.say(
                        f"health: the daemon's unit cannot be read ({err}): waiting the limit", problem=True
                    )
                    unit_unknown = True
            else:
                check, action = check.on_unit(unit, box.monotonic(), box.other_bootable())
        if action is Action.NONE:
            check, action = check.on_tick(box.monotonic(), box.other_bootable())
        if action is Action.NONE:
            box.sleep(interval_s)
    return check, action
