"""The daemon's Box in this process on gpiozero's mock pins, so the demo and tests can press its buttons.

Everything else is what `mynabox run` builds from the stack's config: pcscd, the broker, the reference
service, SQLite and the dummy OLED are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gpiozero.pins.mock import MockFactory, MockPin

from mynabox.config import load_config
from mynabox.testing.stack import BoxStack
from mynabox.wiring import Box


class Buttons:
    """同意 and 緊急 on the mock pins, pressed the way a crew member does."""

    def __init__(self, box: Box, factory: MockFactory) -> None:
        panel = box.parts.panel
        assert panel is not None, "the stack's config has no panel"
        self.consent: MockPin = factory.pin(panel.pins.consent)
        self.emergency: MockPin = factory.pin(panel.pins.emergency)
        self._clear_hold_s = panel.pins.clear_hold_s

    def press(self, pin: MockPin, hold_s: float = 0.15) -> None:
        pin.drive_low()
        time.sleep(hold_s)
        pin.drive_high()

    def hold_both(self) -> None:
        """Both buttons held past clear_hold_s: the crew's clear."""
        self.consent.drive_low()
        self.emergency.drive_low()
        time.sleep(self._clear_hold_s + 0.3)
        self.consent.drive_high()
        self.emergency.drive_high()


@contextmanager
def running_box(stack: BoxStack) -> Iterator[tuple[Box, Buttons]]:
    """Started, READY and its loop running; stopped (loop ended, parts closed in reverse) on exit."""
    factory = MockFactory()
    box = Box(load_config(stack.config_path), pin_factory=factory)
    runner = threading.Thread(target=box.run, name="box", daemon=True)
    try:
        box.start()
        runner.start()
        if not box.ready.wait(10):
            raise RuntimeError("the box did not get ready within 10 s")
        yield box, Buttons(box, factory)
        if not runner.is_alive():  # the loop must still be running when the test is done with it
            raise RuntimeError("the box's loop ended before it was asked to stop")
    finally:
        box.request_stop()
        runner.join(timeout=10)
        box.stop()
