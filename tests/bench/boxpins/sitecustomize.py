"""Bench only (`bench_daemon.py` puts this directory on the daemon's PYTHONPATH): gpiozero's mock pins keep
their current state only, as the box's pins do.

`MockPin` appends every state it is set to to `states`, a history for tests' `assert_states`: the bench's
daemon (pin factory "mock") would grow by five entries per read, ≈ 0.1 MB per 100 reads that the box's lgpio
factory never holds. Only that list is cut, after gpiozero's own `_change_state` ran; the pin's state, its
edge callbacks and everything the daemon does are unchanged. Nothing of the firmware is touched: this runs
before the daemon's first line, in the bench's process tree only, and its own bytes count as ours.
"""

from gpiozero.pins.mock import MockPin

_change_state = MockPin._change_state


def _keep_the_current_state_only(self: MockPin, value: bool) -> bool:
    changed: bool = _change_state(self, value)
    del self.states[:-1]
    return changed


MockPin._change_state = _keep_the_current_state_only
