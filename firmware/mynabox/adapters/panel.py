"""The panel: two buttons (同意 / 緊急), a status LED and a buzzer, through gpiozero.

Pins come from a TOML pin map (data, not code). The pin factory is injected — the real one on a Pi,
gpiozero's MockFactory in tests and the demo — and passed to every device, never set globally.
Button presses are posted as events; LED and buzzer patterns follow the controller's effects. A box without
a panel gets the `NullPanel`, so the composition root never asks whether there is one.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from mynabox.core.effects import LedMode, Tone
from mynabox.core.events import ClearRequested, ConsentPressed, Event
from mynabox.vocab import ConsentMode


class PanelError(Exception):
    """The panel could not be set up (bad pin map, pins unavailable)."""


@dataclass(frozen=True, slots=True)
class PinMap:
    consent: int
    emergency: int
    led: int
    buzzer: int
    debounce_s: float = 0.05
    clear_hold_s: float = 2.0


_KEYS = {
    "buttons": {"consent", "emergency", "debounce_s", "clear_hold_s"},
    "led": {"status"},
    "buzzer": {"pin"},
}

# (on, off) seconds and repeats: distinct enough to tell apart without looking.
TONES: dict[Tone, tuple[float, float, int]] = {
    Tone.OK: (0.08, 0.0, 1),
    Tone.ATTENTION: (0.08, 0.08, 3),
    Tone.HOLD_AGAIN: (0.3, 0.15, 2),
    Tone.ERROR: (0.8, 0.0, 1),
}
LED_BLINK: dict[LedMode, tuple[float, float] | None] = {
    LedMode.READY: (0.1, 2.9),  # a short heartbeat: alive and waiting
    LedMode.BUSY: (0.15, 0.15),
    LedMode.OK: None,  # steady on
    LedMode.ERROR: (0.5, 0.5),
    LedMode.OFF: None,
}


def load_pin_map(path: Path | None = None) -> PinMap:
    """Parse and check a pin map; every problem is reported in one PanelError."""
    try:
        raw = (
            path.read_bytes() if path else resources.files("mynabox").joinpath("data/pins.toml").read_bytes()
        )
        doc = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PanelError(f"pin map {path or 'packaged'}: {err}") from err
    problems = [f"unknown section [{s}]" for s in doc if s not in _KEYS]
    for section, keys in _KEYS.items():
        table = doc.get(section, {})
        problems += [f"{section}.{k}: unknown key" for k in table if k not in keys]
    values: dict[str, Any] = {}
    for name, section, key in (
        ("consent", "buttons", "consent"),
        ("emergency", "buttons", "emergency"),
        ("led", "led", "status"),
        ("buzzer", "buzzer", "pin"),
    ):
        value = doc.get(section, {}).get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 27:
            problems.append(f"{section}.{key}: expected a BCM GPIO number 2-27")
        values[name] = value
    pins = [v for v in values.values() if isinstance(v, int)]
    if len(set(pins)) != len(pins):
        problems.append("two functions share one pin")
    for key in ("debounce_s", "clear_hold_s"):
        if key in doc.get("buttons", {}):
            value = doc["buttons"][key]
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 10:
                problems.append(f"buttons.{key}: expected seconds 0-10")
            values[key] = float(value) if isinstance(value, int | float) else value
    if problems:
        raise PanelError("pin map: " + "; ".join(problems))
    return PinMap(**values)


class PanelPort(Protocol):
    """What the loop drives on the panel; the buttons post their events themselves."""

    def set_led(self, mode: LedMode) -> None: ...
    def buzz(self, tone: Tone) -> None: ...
    def close(self) -> None: ...


class NullPanel:
    """The panel of a box without one (panel.enabled = false): LED and buzzer effects go nowhere."""

    def set_led(self, mode: LedMode) -> None:
        del mode

    def buzz(self, tone: Tone) -> None:
        del tone

    def close(self) -> None:
        pass


class Panel:
    def __init__(self, pins: PinMap, post: Callable[[Event], None], *, pin_factory: Any = None) -> None:
        # DigitalInputDevice, not Button: Button's hold thread wakes every 0.1 s for a feature we do
        # not use (the both-held gesture has its own timer); idle wake-ups cost a battery-fed box.
        from gpiozero import LED, Buzzer, DigitalInputDevice, GPIOZeroError

        self._post = post
        self.pins = pins
        try:
            kwargs = {"pin_factory": pin_factory}
            bounce = pins.debounce_s or None
            self.consent = DigitalInputDevice(pins.consent, pull_up=True, bounce_time=bounce, **kwargs)
            self.emergency = DigitalInputDevice(pins.emergency, pull_up=True, bounce_time=bounce, **kwargs)
            self.led = LED(pins.led, **kwargs)
            self.buzzer = Buzzer(pins.buzzer, **kwargs)
        except (GPIOZeroError, OSError, RuntimeError) as err:
            raise PanelError(f"panel pins unavailable: {type(err).__name__}: {err}") from err
        self._both_timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.consent.when_activated = lambda: self._pressed(ConsentMode.ORAL_CONSENT)
        self.emergency.when_activated = lambda: self._pressed(ConsentMode.LIFE_SAVING_EXCEPTION)
        self.consent.when_deactivated = self._released
        self.emergency.when_deactivated = self._released

    def _pressed(self, mode: ConsentMode) -> None:
        with self._lock:
            if self.consent.is_active and self.emergency.is_active:
                # Both down: a clear gesture, not a consent; fires only if held long enough.
                self._both_timer = threading.Timer(self.pins.clear_hold_s, self._both_held)
                self._both_timer.daemon = True
                self._both_timer.start()
                return
        self._post(ConsentPressed(mode))

    def _released(self) -> None:
        with self._lock:
            if self._both_timer is not None:
                self._both_timer.cancel()
                self._both_timer = None

    def _both_held(self) -> None:
        if self.consent.is_active and self.emergency.is_active:
            self._post(ClearRequested())

    def set_led(self, mode: LedMode) -> None:
        blink = LED_BLINK[mode]
        if mode is LedMode.OFF:
            self.led.off()
        elif blink is None:
            self.led.on()
        else:
            self.led.blink(on_time=blink[0], off_time=blink[1])

    def buzz(self, tone: Tone) -> None:
        on, off, times = TONES[tone]
        self.buzzer.blink(on_time=on, off_time=off or 0.01, n=times)

    def close(self) -> None:
        self._released()
        for device in (self.consent, self.emergency, self.led, self.buzzer):
            device.close()
