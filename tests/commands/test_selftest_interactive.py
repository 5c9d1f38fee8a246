"""`mynabox selftest --interactive` walked by a scripted bench technician on gpiozero's mock pins.

The technician acts on what each prompt asks (presses buttons on the pins) and answers from what the pins
did (the LED's level or blinking, the buzzer's pulses against the tone's pattern), as a person would
from looking and listening. A miswired panel (buttons swapped) and a dead LED must fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from mynabox.adapters.panel import TONES, PinMap
from mynabox.commands.selftest import interactive
from mynabox.core.effects import Tone
from support.flakypins import FlakyFactory

PINS = PinMap(consent=5, emergency=6, led=13, buzzer=19, debounce_s=0.0, clear_hold_s=0.3)


class Technician:
    def __init__(self, factory: MockFactory, *, swapped: bool = False, dead_led: bool = False) -> None:
        self.factory = factory
        self.swapped = swapped
        self.dead_led = dead_led
        self.prompts: list[str] = []

    def pin(self, number: int) -> MockPin:
        pin: MockPin = self.factory.pin(number)
        return pin

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        consent, emergency = (
            (PINS.emergency, PINS.consent) if self.swapped else (PINS.consent, PINS.emergency)
        )
        if "同意" in prompt:
            self.press(consent)
        elif "緊急" in prompt:
            self.press(emergency)
        elif "BOTH" in prompt:
            for n in (PINS.consent, PINS.emergency):
                self.pin(n).drive_low()
            time.sleep(PINS.clear_hold_s + 0.3)
            for n in (PINS.consent, PINS.emergency):
                self.pin(n).drive_high()
        elif "LED" in prompt:
            return "y" if self.led_looks(prompt) else "n"
        elif "pattern" in prompt:
            tone = next(t for t in Tone if f"'{t.value}'" in prompt)
            return "y" if self.heard(tone) else "n"
        return ""

    def press(self, number: int) -> None:
        self.pin(number).drive_low()
        time.sleep(0.05)
        self.pin(number).drive_high()
        time.sleep(0.05)

    def led_looks(self, prompt: str) -> bool:
        levels = set()
        for _ in range(24):  # 1.2 s: a full period of the slowest blink asked about
            levels.add(False if self.dead_led else bool(self.pin(PINS.led).state))
            time.sleep(0.05)
        if "blinking" in prompt:
            return levels == {True, False}
        return levels == ({True} if "steadily on" in prompt else {False})

    def heard(self, tone: Tone) -> bool:
        on, off, times = TONES[tone]
        buzzer = self.pin(PINS.buzzer)
        time.sleep(times * (on + off) + 0.3)
        pulses = _pulses(buzzer)
        buzzer.clear_states()
        return len(pulses) == times and all(abs(p - on) < 0.06 for p in pulses)


def _pulses(pin: MockPin) -> list[float]:
    """Lengths of the high periods recorded on a mock output pin (its timestamps are time since the
    previous change, so a high period's length is the next change's timestamp)."""
    return [after.timestamp for change, after in pairwise(pin.states) if change.state and not after.state]


def verdicts(capsys: pytest.CaptureFixture[str], walk: Callable[[], int]) -> tuple[int, dict[str, str]]:
    failed = walk()
    lines = {}
    for line in capsys.readouterr().out.splitlines():
        verdict, _, name = line.partition(" ")
        lines[name.strip()] = verdict
    return failed, lines


def test_a_working_panel_passes_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    factory = MockFactory()
    tech = Technician(factory)
    failed, lines = verdicts(capsys, lambda: interactive(PINS, ask=tech, pin_factory=factory))
    assert failed == 0, lines
    assert set(lines.values()) == {"ok"}
    assert len(lines) == 2 + 1 + 3 + len(Tone)  # two buttons, the clear gesture, three LED modes, each tone
    assert "hold BOTH buttons for 1.3 s" in tech.prompts[2]


def test_swapped_buttons_and_a_dead_led_fail(capsys: pytest.CaptureFixture[str]) -> None:
    factory = MockFactory()
    tech = Technician(factory, swapped=True, dead_led=True)
    failed, lines = verdicts(capsys, lambda: interactive(PINS, ask=tech, pin_factory=factory))
    assert lines["button 同意 (consent)"] == lines["button 緊急 (emergency)"] == "FAIL"
    assert lines["LED ok"] == lines["LED error"] == "FAIL"
    assert lines["LED off"] == "ok" and lines["both-buttons clear"] == "ok"
    assert all(lines[f"buzzer {t.value}"] == "ok" for t in Tone)
    assert failed == 4


def test_a_part_that_cannot_be_set_up_is_named_before_any_step(capsys: pytest.CaptureFixture[str]) -> None:
    """Its line fails (held by the running daemon, or gone): no step asks the technician about it."""
    factory = FlakyFactory()
    factory.broken = {f"GPIO{PINS.buzzer}"}
    asked: list[str] = []
    failed = interactive(PINS, ask=lambda prompt: asked.append(prompt) or "", pin_factory=factory)
    out = capsys.readouterr().out
    assert failed == 1 and asked == []
    assert "FAIL buzzer: cannot be set up: OSError: [Errno 5] Input/output error" in out
    factory.broken.clear()
    factory.reset()


def test_without_a_factory_the_steps_use_the_boxs_lgpio_chip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench (`make hil` on a real rig) gives no factory: the box's own lgpio factory on the pin map's
    chip, never gpiozero's automatic choice (which needs a Pi revision Debian's kernel may not give). This
    machine has no GPIO chip, so every part is named as failed, with the chip labels it looked for."""
    monkeypatch.chdir(tmp_path)  # importing lgpio leaves its .lgd-nfy* FIFO in the working directory
    failed = interactive(PINS, ask=lambda _prompt: "")
    out = capsys.readouterr().out
    assert failed == 3
    assert "FAIL buttons: cannot be set up: PanelError: no GPIO chip labelled pinctrl-bcm2711" in out
