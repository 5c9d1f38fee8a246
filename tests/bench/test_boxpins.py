"""The bench's hook on gpiozero's mock pins (`boxpins/sitecustomize.py`): only the history goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from gpiozero import Button, LED
from gpiozero.pins.mock import MockFactory
factory = MockFactory()
led, button = LED(17, pin_factory=factory), Button(4, pin_factory=factory)
pressed = []
button.when_pressed = lambda: pressed.append(True)
for _ in range(50):
    led.on()
    led.off()
led.on()
button.pin.drive_low()
button.pin.drive_high()
pin, hooked = led.pin, "sitecustomize" in sys.modules
print(led.is_lit, pin.state, len(pin.states), pin.states[-1].state, len(pressed), hooked)
"""


def run(hooked: bool) -> str:
    env = dict(os.environ)
    if hooked:
        env["PYTHONPATH"] = str(Path(__file__).parent / "boxpins")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_mock_pins_keep_their_state_and_callbacks_but_no_history() -> None:
    assert run(hooked=False) == "True True 102 True 1 False"
    assert run(hooked=True) == "True True 1 True 1 True"
