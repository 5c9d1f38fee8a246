"""Buttons, LED and buzzer: `mynabox selftest --interactive`'s steps, asked through the bench's channel
(each with a timeout) so every answer lands in the report."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mynabox.commands.selftest import PanelSteps, panel_step_names

from .bench import Bench
from .names import panel_check
from .prompts import Operator

pytestmark = pytest.mark.hil
PART = {"button": "buttons", "both-buttons": "buttons", "LED": "led", "buzzer": "buzzer"}


@pytest.fixture(scope="module")
def panel(bench: Bench) -> Iterator[PanelSteps]:
    steps = PanelSteps(bench.pins, pin_factory=bench.pin_factory)
    try:
        yield steps
    finally:
        steps.close()


@pytest.mark.parametrize("step", panel_step_names())
@pytest.mark.check.with_args(panel_check)  # with_args: a lone callable would be decorated
def test_panel(step: str, bench: Bench, panel: PanelSteps, operator: Operator) -> None:
    part = PART[step.split(" ", maxsplit=1)[0]]
    if not bench.rig.has(part):
        pytest.skip(f"the rig has no {part} (parts.{part} = false in {bench.rig.path})")
    kept = {"buttons": panel.panel.buttons, "led": panel.panel.led, "buzzer": panel.panel.buzzer}[part]
    if not kept.working:  # e.g. its lines held by the running daemon, or lgpio unable to start
        pytest.fail(f"{step}: the {part} cannot be set up: {kept.problem}")
    run: Callable[[Callable[[str], str]], str | None] = dict(panel.all())[step]
    problem = run(operator.ask)
    assert problem is None, f"{step}: {problem}"
