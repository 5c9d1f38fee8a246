"""The daemon's `run_box` in a thread of this process on gpiozero's mock pins, so the demo and tests can press
its buttons and look at its parts.

Everything else is what `mynabox run` builds from the stack's config: pcscd, the broker, the reference
service, SQLite and the dummy OLED are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from mynabox.adapters.panel import Panel
from mynabox.config import Config, load_config
from mynabox.wiring import Parts, run_box
from mynabox_testkit.stack import BoxStack


class BoxThread:
    """`run_box(config, shutdown)` in a thread named "box": `start`, `wait_ready`, look at `parts`, `stop`."""

    def __init__(self, config: Config, *, pin_factory: Any = None) -> None:
        self.config = config
        self.shutdown = threading.Event()
        self.code: int | None = None
        self._pin_factory = pin_factory
        self._parts: Parts | None = None
        self._error: BaseException | None = None
        self._settled = threading.Event()  # READY, or run_box ended before it
        self._thread = threading.Thread(target=self._run, name="box", daemon=True)

    def _run(self) -> None:
        try:
            self.code = run_box(
                self.config, self.shutdown, pin_factory=self._pin_factory, on_ready=self._ready
            )
        except BaseException as err:  # handed to the thread waiting for READY
            self._error = err
        finally:
            self._settled.set()

    def _ready(self, parts: Parts) -> None:
        self._parts = parts
        self._settled.set()

    @property
    def parts(self) -> Parts:
        assert self._parts is not None, "the box is not READY yet"
        return self._parts

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """True once READY; raises what stopped the box from starting; False on timeout."""
        self._settled.wait(timeout)
        if self._error is not None:
            raise self._error
        return self._parts is not None

    def stop(self, timeout: float = 10.0) -> None:
        """What SIGTERM does to `mynabox run`: set the Event, then wait for the parts to be stopped."""
        self.shutdown.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)


class Buttons:
    """同意 and 緊急 on the mock pins, pressed the way a crew member does."""

    def __init__(self, box: BoxThread, factory: MockFactory) -> None:
        panel = box.parts.panel
        assert isinstance(panel, Panel), "the stack's config has no panel"
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
def running_box(stack: BoxStack) -> Iterator[tuple[BoxThread, Buttons]]:
    """Started, READY and its loop running; stopped (loop ended, parts closed in reverse) on exit."""
    factory = MockFactory()
    box = BoxThread(load_config(stack.config_path), pin_factory=factory)
    try:
        box.start()
        if not box.wait_ready(10):
            raise RuntimeError("the box did not get ready within 10 s")
        yield box, Buttons(box, factory)
        if not box.running:  # the loop must still be running when the test is done with it
            raise RuntimeError("the box's loop ended before it was asked to stop")
    finally:
        box.stop()
