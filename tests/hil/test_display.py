"""The OLED: the test pattern, then every screen the box can show, each confirmed by the technician."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mynabox.adapters.oled import Oled
from mynabox.render.catalog import catalog
from mynabox.render.draw import render

from .bench import Bench
from .names import screen_check
from .patterns import test_pattern
from .prompts import Operator

pytestmark = [pytest.mark.hil, pytest.mark.needs("oled")]


@pytest.fixture(scope="module")
def oled(bench: Bench) -> Iterator[Oled]:
    rig, display = bench.rig, bench.config.display
    driver = "dummy" if rig.virtual else rig.oled_controller
    device = Oled(driver, i2c_port=rig.oled_port, i2c_address=rig.oled_address, rotate=display.rotate)
    bench.display_view = device
    try:
        yield device
    finally:
        bench.display_view = None
        device.clear()
        device.device.cleanup()


@pytest.mark.check("OLED: test pattern seen (a frame on every edge, 8x8 checkerboard)")
def test_oled_test_pattern(oled: Oled, operator: Operator) -> None:
    oled.show(test_pattern())
    assert operator.yes(
        "does the OLED show the test pattern: a frame on every edge and an 8x8 checkerboard inside, "
        "no dead rows or columns?"
    ), "the technician did not see the test pattern"


@pytest.mark.parametrize("name", list(catalog()))
@pytest.mark.check.with_args(screen_check)  # with_args: a lone callable would be decorated
def test_oled_screen(oled: Oled, operator: Operator, name: str) -> None:
    screen = catalog()[name]
    oled.show(render(screen))
    title = " / ".join((screen.header, *screen.lines))
    assert operator.yes(
        f"does the OLED show the screen '{name}' ({title}) as on the screen sheet, every character legible?"
    ), f"the technician did not confirm the '{name}' screen"
