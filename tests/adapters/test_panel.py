"""The panel through gpiozero's mock pin factory: presses become events, LED and buzzer patterns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from mynabox.adapters.panel import Panel, PanelError, load_pin_map
from mynabox.core.effects import LedMode, Tone
from mynabox.core.events import ClearRequested, ConsentPressed, Event
from mynabox.vocab import ConsentMode


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def panel(factory: MockFactory) -> Iterator[tuple[Panel, list[Event]]]:
    posted: list[Event] = []
    pins = load_pin_map()
    box = Panel(pins, posted.append, pin_factory=factory)
    yield box, posted
    box.close()


def wait_for(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_packaged_pin_map() -> None:
    pins = load_pin_map()
    assert {pins.consent, pins.emergency, pins.led, pins.buzzer} == {17, 27, 22, 23}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[buttons]\nconsent = 17\nemergency = 17\n[led]\nstatus = 22\n[buzzer]\npin = 23\n",
            "share one pin",
        ),
        (
            "[buttons]\nconsent = 17\nemergency = 27\nsnooze = 5\n[led]\nstatus = 22\n[buzzer]\npin = 23\n",
            "unknown key",
        ),
        ("[buttons]\nconsent = 40\nemergency = 27\n[led]\nstatus = 22\n[buzzer]\npin = 23\n", "BCM GPIO"),
        ("[buttons\n", "pin map"),
    ],
)
def test_bad_pin_maps_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pins.toml"
    path.write_text(text)
    with pytest.raises(PanelError, match=message):
        load_pin_map(path)


def test_presses_post_consent(factory: MockFactory, panel: tuple[Panel, list[Event]]) -> None:
    box, posted = panel
    pin = factory.pin(box.pins.consent)
    pin.drive_low()
    wait_for(lambda: posted)
    pin.drive_high()
    time.sleep(0.1)
    factory.pin(box.pins.emergency).drive_low()
    wait_for(lambda: len(posted) == 2)
    factory.pin(box.pins.emergency).drive_high()
    assert posted == [
        ConsentPressed(ConsentMode.ORAL_CONSENT),
        ConsentPressed(ConsentMode.LIFE_SAVING_EXCEPTION),
    ]


def test_holding_both_clears(factory: MockFactory, tmp_path: Path) -> None:
    path = tmp_path / "pins.toml"
    path.write_text(
        "[buttons]\nconsent = 17\nemergency = 27\ndebounce_s = 0\nclear_hold_s = 0.3\n"
        "[led]\nstatus = 22\n[buzzer]\npin = 23\n"
    )
    posted: list[Event] = []
    box = Panel(load_pin_map(path), posted.append, pin_factory=factory)
    try:
        factory.pin(17).drive_low()
        factory.pin(27).drive_low()
        wait_for(lambda: ClearRequested() in posted)
        assert posted[0] == ConsentPressed(ConsentMode.ORAL_CONSENT)  # the first button alone counted
    finally:
        box.close()


def test_led_and_buzzer_patterns(factory: MockFactory, panel: tuple[Panel, list[Event]]) -> None:
    box, _ = panel
    led, buzzer = factory.pin(box.pins.led), factory.pin(box.pins.buzzer)
    box.set_led(LedMode.OK)
    assert led.state
    box.set_led(LedMode.OFF)
    assert not led.state
    box.buzz(Tone.ATTENTION)
    wait_for(lambda: len([s for s in buzzer.states if s.state]) >= 3)  # three short beeps
    box.buzz(Tone.ERROR)
    time.sleep(0.05)
    assert buzzer.state  # one long tone is still sounding
