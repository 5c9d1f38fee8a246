"""The box's kernel takes over the early watchdog a trial boot arms (read-only: no reboot, so it needs no
`parts.watchdog`; a virtual rig has no kernel of its own to read)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from . import kmsg
from .measure import Measurement

pytestmark = [pytest.mark.hil, pytest.mark.hardware_only("no kernel of its own")]


@pytest.mark.check("watchdog: its driver is up before a trial boot's early watchdog fires")
def test_the_watchdog_driver_is_up_before_the_early_watchdog_fires(
    measure: Callable[[str, float], Measurement], fact: Callable[[str, object], None]
) -> None:
    """A trial boot (the first boots of an installed update) arms the hardware watchdog in U-Boot; the
    driver must take it over in time, or the update falls back after three resets. Measured on this board
    and card from the kernel's own log (a box booted long ago may have rotated the line out: then skipped)."""
    found = kmsg.driver_up(kmsg.read())
    if found is None:
        pytest.skip("no hardware watchdog driver's line left in the kernel's log: reboot and run again")
    name, at = found
    fact("driver", name.removeprefix("kernel_to_").removesuffix("_s"))
    measure(name, at)
