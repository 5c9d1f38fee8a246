"""The panel through gpiozero's mock pin factory: presses become events, LED and buzzer patterns."""

from __future__ import annotations

import gc
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from mynabox.adapters.gpiochip import board_info, chip_factory, find_chip
from mynabox.adapters.panel import Panel, PanelError, PinMapError, bcm_number, load_pin_map
from mynabox.core.effects import LedMode, Tone
from mynabox.core.events import ClearRequested, ConsentPressed, Event, PartHealth
from mynabox.vocab import ConsentMode, Part
from support.flakypins import FlakyFactory


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
    assert (pins.consent, pins.emergency, pins.led, pins.buzzer) == ("GPIO17", "GPIO27", "GPIO22", "GPIO23")
    assert pins.chips == ("pinctrl-bcm2711", "pinctrl-bcm2835")
    assert [bcm_number(line) for line in (pins.consent, pins.led)] == [17, 22]


def test_a_pin_map_by_offset_on_another_chip() -> None:
    """The emulated board's map: qemu virt's PL061, whose lines have no names, by offset."""
    text = '[chip]\nlabels = ["9030000.pl061"]\n[buttons]\nconsent = 3\nemergency = 4\n'
    text += "[led]\nstatus = 5\n[buzzer]\npin = 6\n"
    path = Path(tempfile.mkdtemp()) / "pins.toml"
    path.write_text(text)
    pins = load_pin_map(path)
    assert (pins.chips, pins.consent, pins.buzzer) == (("9030000.pl061",), 3, 6)


REST = "[led]\nstatus = 22\n[buzzer]\npin = 23\n"


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
        ("[buttons]\nconsent = 600\nemergency = 27\n" + REST, "offset 0-511"),
        ('[buttons]\nconsent = "GPIO 17"\nemergency = 27\n' + REST, "line name"),
        ('[chip]\nlabels = "pinctrl"\n[buttons]\nconsent = 17\nemergency = 27\n' + REST, "chip labels"),
        ("chip = 3\n", "expected a table"),
        ("[buttons\n", "pin map"),
    ],
)
def test_bad_pin_maps_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pins.toml"
    path.write_text(text)
    with pytest.raises(PinMapError, match=message):
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


# -- degrade, never die ------------------------------------------------------------------------------


@pytest.fixture
def flaky() -> Iterator[FlakyFactory]:
    factory = FlakyFactory()
    yield factory
    factory.broken.clear()
    factory.reset()


def test_a_part_that_fails_at_start_is_left_out_and_comes_back(flaky: FlakyFactory) -> None:
    flaky.broken = {"GPIO22"}  # the LED's line
    posted: list[Event] = []
    box = Panel(load_pin_map(), posted.append, pin_factory=flaky)
    try:
        assert box.failed() == (Part.LED,) and posted == []  # the first state carries it, not an event
        box.set_led(LedMode.OK)  # goes nowhere, raises nothing
        box.buzz(Tone.OK)
        assert box.consent is not None  # the buttons work
        box.retry()
        assert box.failed() == (Part.LED,)
        flaky.broken.clear()
        box.retry()
        assert box.failed() == () and posted == [PartHealth(Part.LED, working=True)]
        assert flaky.pin("GPIO22").state  # the LED shows the mode it was last told
    finally:
        box.close()


def test_parts_failing_mid_run_are_reported_and_the_rest_works(flaky: FlakyFactory) -> None:
    posted: list[Event] = []
    box = Panel(load_pin_map(), posted.append, pin_factory=flaky)
    try:
        assert box.failed() == ()
        flaky.broken = {"GPIO23"}
        box.buzz(Tone.ERROR)  # the write fails: the buzzer is out
        assert posted == [PartHealth(Part.BUZZER, working=False)]
        flaky.broken = {"GPIO23", "GPIO17"}
        box.retry()  # the probe finds the 同意 line gone: the buttons are out
        assert box.failed() == (Part.BUTTONS, Part.BUZZER)
        assert posted[-1] == PartHealth(Part.BUTTONS, working=False)
        box.set_led(LedMode.OK)
        assert flaky.pin("GPIO22").state  # the LED still works
        flaky.broken.clear()
        box.retry()
        assert box.failed() == ()
        posted.clear()
        flaky.pin("GPIO27").drive_low()  # the reopened buttons post presses again
        wait_for(lambda: posted == [ConsentPressed(ConsentMode.LIFE_SAVING_EXCEPTION)])
        flaky.pin("GPIO27").drive_high()
    finally:
        box.close()


def test_no_gpio_chip_leaves_every_part_failed_and_retries_the_chip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lgpio factory on a machine without the pin map's chip (this one has no /dev/gpiochip*)."""
    monkeypatch.chdir(tmp_path)  # importing lgpio leaves its .lgd-nfy* FIFO in the working directory
    with pytest.raises(PanelError, match=r"no GPIO chip labelled pinctrl-bcm2711 or pinctrl-bcm2835"):
        find_chip(("pinctrl-bcm2711", "pinctrl-bcm2835"), dev=tmp_path)
    made: list[object] = []

    def factory(pins: object) -> object:
        made.append(pins)
        return chip_factory(load_pin_map())

    posted: list[Event] = []
    box = Panel(load_pin_map(), posted.append, make_factory=factory)
    try:
        assert box.failed() == (Part.BUTTONS, Part.LED, Part.BUZZER)
        assert box.buttons.problem is not None and "no GPIO chip labelled" in box.buttons.problem
        box.retry()
        assert len(made) == 6 and posted == []  # tried again, still failed: nothing new to report
    finally:
        box.close()


def test_the_chip_board_finds_lines_by_name_and_offset() -> None:
    """Line "GPIO17" at offset 20 (a chip numbered differently) is line 20, never line 17; an unnamed line
    is "GPIO<offset>" too (a SoC chip whose device tree gives no gpio-line-names)."""
    board = board_info("test-chip", [(17, "GPIO4"), (20, "GPIO17"), (21, "")])

    def found(name: object) -> list[str]:
        return [pin.name for _header, pin in board.find_pin(name)]  # gpiozero takes the offset from it

    assert found("GPIO17") == ["GPIO20"] and found("GPIO4") == ["GPIO17"]
    assert found(21) == found("21") == found("GPIO21") == ["GPIO21"]
    assert found("GPIO22") == []


def test_both_pressed_together_clear_once(factory: MockFactory, tmp_path: Path) -> None:
    """On a kernel gpiochip both edges of a two-finger press can arrive after both lines are low: each
    edge's handler then sees both down. One clear, not two (the VM run on gpio-sim posted two)."""
    path = tmp_path / "pins.toml"
    path.write_text("[buttons]\nconsent = 17\nemergency = 27\nclear_hold_s = 0.3\n" + REST)
    posted: list[Event] = []
    box = Panel(load_pin_map(path), posted.append, pin_factory=factory)
    try:
        buttons = box.buttons.device
        assert buttons is not None
        buttons.consent.when_activated = None  # hold the edge handlers back, as a busy kernel queue does
        buttons.emergency.when_activated = None
        factory.pin(17).drive_low()
        factory.pin(27).drive_low()
        buttons._pressed(ConsentMode.ORAL_CONSENT)  # then both edges are handled, both lines down
        buttons._pressed(ConsentMode.LIFE_SAVING_EXCEPTION)
        time.sleep(0.6)
        assert posted == [ClearRequested()]
    finally:
        box.close()


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """Exceptions that escaped a thread: Python would print their traceback on stderr (the journal)."""
    seen: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", seen.append)
    return seen


def test_a_line_failing_mid_pattern_reports_the_part_not_a_traceback(
    flaky: FlakyFactory, thread_errors: list[threading.ExceptHookArgs], capfd: pytest.CaptureFixture[str]
) -> None:
    """gpiozero writes blink patterns on a thread of its own: a failure there is the part failing."""
    posted: list[Event] = []
    box = Panel(load_pin_map(), posted.append, pin_factory=flaky)
    try:
        box.set_led(LedMode.BUSY)  # blinking every 0.15 s
        box.buzz(Tone.ATTENTION)  # three beeps: the first one is on
        flaky.broken = {"GPIO22", "GPIO23"}
        wait_for(lambda: flaky.failures["GPIO22"] and flaky.failures["GPIO23"])  # both threads wrote since
        time.sleep(0.1)  # and reported it
        # The lines are back before the loop's retry: only the threads saw them fail, and said so.
        flaky.broken.clear()
        box.retry()
        assert box.failed() == (Part.LED, Part.BUZZER)
        assert posted == [PartHealth(Part.LED, working=False), PartHealth(Part.BUZZER, working=False)]
        assert box.led.problem is not None and "Input/output error" in box.led.problem
        box.retry()  # and they come back, the LED blinking as it was told
        assert box.failed() == ()
        assert posted[2:] == [PartHealth(Part.LED, working=True), PartHealth(Part.BUZZER, working=True)]
        led = flaky.pin("GPIO22")
        wait_for(lambda: len(led.states) > 4)
    finally:
        box.close()
    assert thread_errors == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_line_failing_under_a_press_reports_the_buttons(
    flaky: FlakyFactory, thread_errors: list[threading.ExceptHookArgs], tmp_path: Path
) -> None:
    """A press is handled on the pin library's callback thread, the both-held gesture on a timer's."""
    path = tmp_path / "pins.toml"
    path.write_text(
        '[buttons]\nconsent = "GPIO17"\nemergency = "GPIO27"\nclear_hold_s = 0.2\n'
        '[led]\nstatus = "GPIO22"\n[buzzer]\npin = "GPIO23"\n'
    )
    posted: list[Event] = []
    box = Panel(load_pin_map(path), posted.append, pin_factory=flaky)
    try:
        flaky.broken = {"GPIO17"}
        flaky.pin("GPIO27").drive_low()  # the 緊急 press looks at 同意 too: its line fails in the callback
        flaky.pin("GPIO27").drive_high()
        flaky.broken.clear()
        box.retry()
        assert box.failed() == (Part.BUTTONS,) and posted == [PartHealth(Part.BUTTONS, working=False)]
        box.retry()
        assert box.failed() == ()
        posted.clear()
        flaky.pin("GPIO17").drive_low()
        flaky.pin("GPIO27").drive_low()  # both held: the timer looks at both lines in 0.2 s
        flaky.broken = {"GPIO27"}
        time.sleep(0.4)
        flaky.broken.clear()
        box.retry()
        assert posted == [ConsentPressed(ConsentMode.ORAL_CONSENT), PartHealth(Part.BUTTONS, working=False)]
    finally:
        box.close()
    assert thread_errors == []


def test_a_part_failing_as_it_is_set_up_leaves_no_traceback(
    flaky: FlakyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpiozero closes a half-built device when it is dropped, and that close fails on the same line."""
    ignored: list[object] = []  # what Python would print as "Exception ignored in ... __del__"
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    flaky.broken = {"GPIO17", "GPIO22", "GPIO23"}
    posted: list[Event] = []
    box = Panel(load_pin_map(), posted.append, pin_factory=flaky)
    try:
        box.retry()  # each retry builds them again
        gc.collect()
        assert box.failed() == (Part.BUTTONS, Part.LED, Part.BUZZER)
    finally:
        box.close()
    gc.collect()
    assert ignored == []
