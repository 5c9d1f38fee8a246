"""The panel: two buttons (同意 / 緊急), a status LED and a buzzer, through gpiozero.

Pins come from a TOML pin map (data, not code) that names lines the way the kernel does: the GPIO
controller by its label (`pinctrl-bcm2711`, `pinctrl-bcm2835`, …) and each line by its name (`GPIO17`, from
the device tree's gpio-line-names) or its offset, so one map serves a Pi and an emulated board. The pin
factory is injected — `adapters.gpiochip.chip_factory` on the box, gpiozero's MockFactory in tests and the
demo — and passed to every device, never set globally.

Degrade, never die: the buttons, the LED and the buzzer are three parts (`adapters.kept.Kept`); one that
cannot be set up, or fails later, is reported (`PartHealth`), left out and tried again by `retry()`, while
the rest of the box reads cards and delivers. Button presses are posted as events; LED and buzzer patterns
follow the controller's effects. A box without a panel gets the `NullPanel`, so the composition root never
asks whether there is one.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from mynabox.adapters.kept import Kept
from mynabox.core.effects import LedMode, Tone
from mynabox.core.events import ClearRequested, ConsentPressed, Event
from mynabox.record import record
from mynabox.vocab import ConsentMode, Part


class PanelError(Exception):
    """The panel could not be set up (bad pin map, chip or pins unavailable)."""


class PinMapError(PanelError):
    """The pin map file is unusable: a config problem, not a part that failed."""


Line = int | str
"""A GPIO line: its offset on the chip, or its name (gpio-line-names), e.g. "GPIO17"."""

DEFAULT_CHIPS = ("pinctrl-bcm2711", "pinctrl-bcm2835")  # Pi 4 / 400; Pi 3B+, Zero 2 W (BCM2837 too)
_LINE_NAME = re.compile(r"[A-Za-z0-9_.:+-]{1,32}")
MAX_OFFSET = 511


@record
class PinMap:
    consent: Line
    emergency: Line
    led: Line
    buzzer: Line
    debounce_s: float = 0.05
    clear_hold_s: float = 2.0
    chips: tuple[str, ...] = DEFAULT_CHIPS  # labels of the GPIO controller, tried in order


def bcm_number(line: Line) -> int | None:
    """The Pi's BCM number of a line named `GPIOn` (or given by offset on the SoC's chip), else None."""
    if isinstance(line, int):
        return line
    match = re.fullmatch(r"GPIO(\d{1,2})", line)
    return int(match[1]) if match else None


_KEYS = {
    "chip": {"labels"},
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


def _line(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= MAX_OFFSET
    return isinstance(value, str) and _LINE_NAME.fullmatch(value) is not None


def load_pin_map(path: Path | None = None) -> PinMap:
    """Parse and check a pin map; every problem is reported in one PinMapError."""
    try:
        raw = (
            path.read_bytes() if path else resources.files("mynabox").joinpath("data/pins.toml").read_bytes()
        )
        doc = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PinMapError(f"pin map {path or 'packaged'}: {err}") from err
    problems = [f"unknown section [{s}]" for s in doc if s not in _KEYS]
    problems += [f"[{s}]: expected a table" for s in _KEYS if not isinstance(doc.get(s, {}), dict)]
    if problems:
        raise PinMapError("pin map: " + "; ".join(problems))
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
        if not _line(value):
            problems.append(f'{section}.{key}: expected a line name (e.g. "GPIO17") or offset 0-{MAX_OFFSET}')
        values[name] = value
    pins = [v for v in values.values() if _line(v)]
    if len(set(pins)) != len(pins):
        problems.append("two functions share one pin")
    for key in ("debounce_s", "clear_hold_s"):
        if key in doc.get("buttons", {}):
            value = doc["buttons"][key]
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 10:
                problems.append(f"buttons.{key}: expected seconds 0-10")
            values[key] = float(value) if isinstance(value, int | float) else value
    if "labels" in doc.get("chip", {}):
        labels = doc["chip"]["labels"]
        if (
            not isinstance(labels, list)
            or not 1 <= len(labels) <= 8
            or not all(isinstance(x, str) and _LINE_NAME.fullmatch(x) for x in labels)
        ):
            problems.append('chip.labels: expected 1-8 chip labels, e.g. ["pinctrl-bcm2711"]')
        else:
            values["chips"] = tuple(labels)
    if problems:
        raise PinMapError("pin map: " + "; ".join(problems))
    return PinMap(**values)


class PanelPort(Protocol):
    """What the loop drives on the panel; the buttons post their events themselves."""

    def set_led(self, mode: LedMode) -> None: ...
    def buzz(self, tone: Tone) -> None: ...
    def retry(self) -> None: ...
    def failed(self) -> tuple[Part, ...]: ...
    def close(self) -> None: ...


class NullPanel:
    """The panel of a box without one (panel.enabled = false): LED and buzzer effects go nowhere."""

    def set_led(self, mode: LedMode) -> None:
        del mode

    def buzz(self, tone: Tone) -> None:
        del tone

    def retry(self) -> None:
        pass

    def failed(self) -> tuple[Part, ...]:
        return ()

    def close(self) -> None:
        pass


class Buttons:
    """同意 and 緊急: a press posts its consent, both held `clear_hold_s` post a clear."""

    def __init__(self, pins: PinMap, post: Callable[[Event], None], factory: Any) -> None:
        # DigitalInputDevice, not Button: Button's hold thread wakes every 0.1 s for a feature we do
        # not use (the both-held gesture has its own timer); idle wake-ups cost a battery-fed box.
        input_device = _devices()[0]  # gpiozero's DigitalInputDevice

        self._post = post
        self._pins = pins
        self.failed_in_thread: Callable[[BaseException], None] = lambda err: None
        bounce = pins.debounce_s or None
        self.consent = input_device(pins.consent, pull_up=True, bounce_time=bounce, pin_factory=factory)
        try:
            self.emergency = input_device(
                pins.emergency, pull_up=True, bounce_time=bounce, pin_factory=factory
            )
        except BaseException:
            self.consent.close()
            raise
        self._both_timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.consent.when_activated = lambda: self._pressed(ConsentMode.ORAL_CONSENT)
        self.emergency.when_activated = lambda: self._pressed(ConsentMode.LIFE_SAVING_EXCEPTION)
        self.consent.when_deactivated = self._released
        self.emergency.when_deactivated = self._released

    def probe(self) -> None:
        """Read both lines: a chip or line that went away raises here."""
        for device in (self.consent, self.emergency):
            device.pin.state  # noqa: B018 - the read is the probe

    def _pressed(self, mode: ConsentMode) -> None:
        # On the pin library's callback thread: a line that fails there is the buttons failing, reported.
        try:
            self._on_press(mode)
        except Exception as err:
            self.failed_in_thread(err)

    def _on_press(self, mode: ConsentMode) -> None:
        with self._lock:
            if self.consent.is_active and self.emergency.is_active:
                # Both down: a clear gesture, not a consent; fires only if held long enough. Pressed
                # together, both edges can find both down (seen on a kernel gpiochip): one timer, one clear.
                if self._both_timer is None:
                    self._both_timer = threading.Timer(self._pins.clear_hold_s, self._both_held)
                    self._both_timer.daemon = True
                    self._both_timer.start()
                return
        self._post(ConsentPressed(mode))

    def _released(self) -> None:
        with self._lock:
            if self._both_timer is not None:
                self._both_timer.cancel()
                self._both_timer = None

    def _both_held(self) -> None:  # on the timer's thread
        try:
            held = self.consent.is_active and self.emergency.is_active
        except Exception as err:
            self.failed_in_thread(err)
            return
        if held:
            self._post(ClearRequested())

    def close(self) -> None:
        self._released()
        errors = []
        for device in (self.consent, self.emergency):  # each, even if the other's line fails
            try:
                device.close()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]


def _close(device: Any) -> None:
    device.close()


def _probe(device: Any) -> None:
    device.pin.state  # noqa: B018 - the read is the probe


@functools.cache
def _devices() -> tuple[Any, Any, Any]:
    """gpiozero's DigitalInputDevice, LED and Buzzer, made quiet where gpiozero would print a traceback:

    - a device whose line fails as it is set up is half-built, and gpiozero's `__del__` closes it, which
      fails the same way: Python prints "Exception ignored in __del__" and its traceback, at every retry;
    - the blink thread (`_blink_device`, its body in gpiozero 2.0, pinned) dies with a traceback when a
      write fails mid-pattern: it reports the failure to `failed_in_thread` instead.
    """
    from gpiozero import LED, Buzzer, DigitalInputDevice

    def close_quietly(self: Any) -> None:
        with contextlib.suppress(Exception):  # the set-up's own error was raised to the kept part already
            self.close()

    def quiet(base: Any, **body: Any) -> Any:
        return type(f"Quiet{base.__name__}", (base,), {"__del__": close_quietly, **body})

    def reporting(base: Any) -> Any:
        def _blink_device(self: Any, *args: Any) -> None:
            try:
                base._blink_device(self, *args)
            except Exception as err:  # whatever the pin library raises: the part failed
                self.failed_in_thread(err)

        # failed_in_thread a class attribute: gpiozero refuses attributes a class lacks once constructed.
        return quiet(base, _blink_device=_blink_device, failed_in_thread=staticmethod(lambda err: None))

    return quiet(DigitalInputDevice), reporting(LED), reporting(Buzzer)


def _reporting_to(kept: Kept[Any], device: Any) -> Any:
    device.failed_in_thread = lambda err: kept.report(device, err)
    return device


def _blink(device: Any, on: float, off: float, times: int | None) -> None:
    # The first write (the blink starts with "on" anyway) is made here, so a line that already went away
    # fails in `use`; one that goes away mid-pattern fails on the blink thread, which reports it.
    device.on()
    device.blink(on_time=on, off_time=off, n=times)


def _set_led(led: Any, mode: LedMode) -> None:
    blink = LED_BLINK[mode]
    if mode is LedMode.OFF:
        led.off()
    elif blink is None:
        led.on()
    else:
        _blink(led, blink[0], blink[1], None)


class Panel:
    def __init__(
        self,
        pins: PinMap,
        post: Callable[[Event], None],
        *,
        pin_factory: Any = None,
        make_factory: Callable[[PinMap], Any] | None = None,
    ) -> None:
        """`pin_factory`: the factory to use; or `make_factory(pins)` makes it, tried again on `retry()`
        while it fails (e.g. no GPIO chip with one of the map's labels)."""
        _input, led_class, buzzer_class = _devices()
        self.pins = pins
        self._factory = pin_factory
        self._make_factory = make_factory
        self._led_mode = LedMode.OFF
        self.buttons: Kept[Buttons] = Kept(
            Part.BUTTONS,
            lambda: _reporting_to(self.buttons, Buttons(pins, post, self._pin_factory())),
            post,
            _close,
            probe=Buttons.probe,
        )
        self.led: Kept[Any] = Kept(
            Part.LED,
            lambda: _reporting_to(self.led, led_class(pins.led, pin_factory=self._pin_factory())),
            post,
            _close,
            probe=_probe,
            restored=lambda _led: self.set_led(self._led_mode),
        )
        self.buzzer: Kept[Any] = Kept(
            Part.BUZZER,
            lambda: _reporting_to(self.buzzer, buzzer_class(pins.buzzer, pin_factory=self._pin_factory())),
            post,
            _close,
            probe=_probe,
        )
        self._parts = (self.buttons, self.led, self.buzzer)
        for part in self._parts:
            part.start()

    def _pin_factory(self) -> Any:
        if self._factory is None and self._make_factory is not None:
            self._factory = self._make_factory(self.pins)
        return self._factory

    @property
    def consent(self) -> Any:
        """The 同意 input device (None while the buttons are failed)."""
        buttons = self.buttons.device
        return None if buttons is None else buttons.consent

    @property
    def emergency(self) -> Any:
        buttons = self.buttons.device
        return None if buttons is None else buttons.emergency

    def set_led(self, mode: LedMode) -> None:
        self._led_mode = mode  # shown again when a failed LED comes back
        self.led.use(lambda led: _set_led(led, mode))

    def buzz(self, tone: Tone) -> None:
        on, off, times = TONES[tone]
        self.buzzer.use(lambda buzzer: _blink(buzzer, on, off or 0.01, times))

    def retry(self) -> None:
        for part in self._parts:
            part.retry()

    def failed(self) -> tuple[Part, ...]:
        return tuple(p.part for p in self._parts if not p.working)

    def close(self) -> None:
        errors = []
        for part in self._parts:  # each, even if another's line fails
            try:
                part.close()
            except Exception as err:
                errors.append(err)
        factory, self._factory = self._factory, None
        if factory is not None and self._make_factory is not None:  # ours, not the caller's
            factory.close()
        if errors:
            raise errors[0]
