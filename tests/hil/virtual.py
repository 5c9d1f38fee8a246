"""The virtual rig: the real stack on this machine and a scripted technician who acts on the prompts.

The technician presses gpiozero's mock pins, presents the virtual cards on the vpcd reader, and answers
from what really happened: the LED pin's levels, the buzzer pin's pulses against the tone's pattern, the
dummy display's pixels against the screen sheet. Faults (`[virtual] faults`) make the rig or the person
wrong in the ways a workshop meets: a swapped button pair, a dead LED, a technician who never answers, a
card that never answers an APDU, a dark OLED.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from itertools import pairwise

from gpiozero.pins.mock import MockFactory, MockPin
from PIL import Image, ImageChops

from mynabox.adapters.panel import TONES, PinMap, load_pin_map
from mynabox.config import load_config
from mynabox.core.effects import Tone
from mynabox.render.catalog import catalog
from mynabox.render.draw import render
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import card_id_for
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer

from .bench import Bench, scripted
from .patterns import test_pattern
from .rig import Rig

NEVER_S = 3600.0  # a card that "never" answers: an hour per APDU
# Otherwise the bench's latency model (3 ms per APDU, 424 kbit/s), so read times look like a real card's.


def open_virtual_bench(rig: Rig) -> Bench:
    stack = BoxStack(device_id=rig.device_id, result_clear_s=5.0)
    stack.start()
    try:
        assert stack.pcscd is not None and stack.kit is not None
        stack.pcscd.use_in_process()  # this process's PC/SC calls go to the stack's pcscd
        config = load_config(stack.config_path)
        pins = load_pin_map(rig.pins_file or config.panel.pins_file)
        factory = MockFactory()
        silent_card = "silent-card" in rig.faults
        cards = {
            "test": VirtualMyNumberCard(
                card_id_for("warfarin-elderly"),
                faults=Faults(latency_s=NEVER_S if silent_card else 0.003, baud=424),
            ),
            "other": VirtualMyNumberCard("HILOTHERCARD", faults=Faults(non_jpki=True)),
        }
        server = VpcdCardServer(cards["test"], port=stack.pcscd.vpcd_port)
        technician = VirtualTechnician(rig, pins, factory, server, stack, cards)
        operator = scripted(rig, technician)
        kit = stack.kit
        gateway = kit.pki.client(kit.gateway)
        bench_files = {
            "gateway_ca": kit.pki.ca_cert,
            "gateway_cert": gateway.cert,
            "gateway_key": gateway.key,
            "gateway_envelope_key": kit.gateway_key_file,
            "device_keys_dir": kit.device_keys_dir,
        }
        # The bench gateway's files are the stack's; the reader is the vpcd slot the cards are put on.
        rig = replace(
            rig,
            bench=bench_files,
            bench_broker=f"{config.mqtt.host}:{config.mqtt.port}",
            bench_summary=config.summary.url,
            reader_name=rig.reader_name or stack.pcscd.reader_name(0),
        )
        bench = VirtualBench(rig, stack.config_path, config, pins, operator, pin_factory=factory, cards=cards)
        bench.stack, bench.server, bench.technician = stack, server, technician
        technician.bench = bench
        bench._closers += [stack.stop, server.remove, technician.leave]
    except BaseException:
        stack.stop()
        raise
    return bench


class VirtualBench(Bench):
    stack: BoxStack
    server: VpcdCardServer
    technician: VirtualTechnician

    def env(self) -> dict[str, str]:
        return self.stack.env()

    def card_log(self) -> list[bytes]:
        """Every APDU the virtual cards were sent (the suite must never have sent VERIFY)."""
        return [apdu for card in self.cards.values() for apdu in card.log]


class VirtualTechnician:
    """Acts on a prompt, returns the answer a careful person would give (None: walked away)."""

    def __init__(
        self,
        rig: Rig,
        pins: PinMap,
        factory: MockFactory,
        server: VpcdCardServer,
        stack: BoxStack,
        cards: dict[str, VirtualMyNumberCard],
    ) -> None:
        self.rig = rig
        self.pins = pins
        self.factory = factory
        self.server = server
        self.stack = stack
        self.cards = cards
        self.bench: Bench | None = None
        self._away = threading.Event()
        self.silent = "silent-technician" in rig.faults
        self.swapped = "swapped-buttons" in rig.faults
        self.dead_led = "dead-led" in rig.faults
        self.dead_oled = "dead-oled" in rig.faults  # a panel that stays dark whatever is sent to it

    def leave(self) -> None:
        self._away.set()

    def __call__(self, prompt: str) -> str | None:
        if self.silent:
            self._away.wait()
            return None
        if "did you hear the '" not in prompt:
            self.pin(self.pins.buzzer).clear_states()  # asked about a sound, one recalls only the last one
        if "remove the card" in prompt:
            self.server.remove()
            assert self.stack.pcscd is not None
            self.stack.pcscd.wait_empty(0)
            return ""
        if "hold" in prompt and self.rig.other_card in prompt:
            self.server.insert(self.cards["other"])
            return ""
        if "hold" in prompt and self.rig.test_card in prompt:
            if "press 同意" in prompt:
                self.press(self.pins.emergency if self.swapped else self.pins.consent)
            self.server.insert(self.cards["test"])
            return ""
        if "the OLED show the test pattern" in prompt:
            return "y" if self._shows(test_pattern()) else "n"
        if "the OLED show the screen '" in prompt:
            name = prompt.split("screen '", 1)[1].split("'", 1)[0]
            return "y" if self._shows(render(catalog()[name])) else "n"
        if "BOTH" in prompt:
            self.hold_both()
        elif "press and release" in prompt:
            consent = "同意" in prompt
            if self.swapped:
                consent = not consent
            self.press(self.pins.consent if consent else self.pins.emergency)
        elif "is the LED" in prompt:
            return "y" if self.led_looks(prompt) else "n"
        elif "did you hear the '" in prompt:
            tone = next(t for t in Tone if f"'{t.value}'" in prompt)
            return "y" if self.heard(tone) else "n"
        elif "REBOOTS" in prompt:
            return "n"
        return ""

    # -- hands ----------------------------------------------------------------------------------------

    def pin(self, number: int) -> MockPin:
        pin: MockPin = self.factory.pin(number)
        return pin

    def press(self, number: int) -> None:
        self.pin(number).drive_low()
        time.sleep(0.15)
        self.pin(number).drive_high()
        time.sleep(0.1)

    def hold_both(self) -> None:
        for n in (self.pins.consent, self.pins.emergency):
            self.pin(n).drive_low()
        time.sleep(self.pins.clear_hold_s + 0.3)
        for n in (self.pins.consent, self.pins.emergency):
            self.pin(n).drive_high()

    # -- eyes and ears --------------------------------------------------------------------------------

    def led_looks(self, prompt: str) -> bool:
        levels = set()
        for _ in range(24):  # 1.2 s: a full period of the slowest blink asked about
            levels.add(False if self.dead_led else bool(self.pin(self.pins.led).state))
            time.sleep(0.05)
        if "blinking" in prompt:
            return levels == {True, False}
        return levels == ({True} if "steadily on" in prompt else {False})

    def heard(self, tone: Tone) -> bool:
        on, off, times = TONES[tone]
        buzzer = self.pin(self.pins.buzzer)
        time.sleep(times * (on + off) + 0.3)
        # A mock pin's timestamps are time since the previous change: a high period lasts the next one's.
        pulses = [b.timestamp for a, b in pairwise(buzzer.states) if a.state and not b.state]
        buzzer.clear_states()
        # Count and rough length, as an ear judges them (a 0.08 s chirp vs a 0.8 s tone), with room for load.
        return len(pulses) == times and all(abs(p - on) < 0.25 for p in pulses)

    def _shows(self, expected: Image.Image) -> bool:
        time.sleep(0.05)
        shown = self.bench.display_image() if self.bench is not None else None
        if shown is None or self.dead_oled:
            return False
        return ImageChops.difference(shown.convert("1"), expected.convert("1")).getbbox() is None
