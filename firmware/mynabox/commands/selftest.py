"""`mynabox selftest`: one line per check, exit 0 only when every check passes.

Checks: config, reader present, OLED answers, panel (the pin map's GPIO chip and lines, not claimed: the
running daemon holds them), outbox healthy, free disk, clock synced, summary service reachable with our
certificate, broker reachable with our certificate. A failed display or panel does not stop the daemon
(it reads and delivers without them) but fails selftest, so the workshop sees it. `--interactive` then walks
a bench technician through the buttons, the LED and the buzzer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mynabox.core.effects import LedMode, Tone
from mynabox.vocab import ConsentMode

if TYPE_CHECKING:
    from mynabox.adapters.panel import Line, PinMap
    from mynabox.config import Config

MIN_FREE_MB = 200
# What a person sees for each LED mode the bench checks.
Step = Callable[[Callable[[str], str]], "str | None"]  # asks through the callable, returns the problem
LED_LOOKS = {LedMode.OK: "steadily on", LedMode.ERROR: "blinking", LedMode.OFF: "off"}
BUTTONS = (
    ("同意 (consent)", ConsentMode.ORAL_CONSENT),
    ("緊急 (emergency)", ConsentMode.LIFE_SAVING_EXCEPTION),
)
CARD_PRESENT_S = 0.2  # the reader check reads a card already on the reader; it does not wait for one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="config file (default $MYNABOX_CONFIG or /etc/mynabox/config.toml)"
    )
    parser.add_argument(
        "--interactive", action="store_true", help="also test buttons, LED and buzzer with a person"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network check (default 5)")


def run(args: argparse.Namespace) -> int:
    from mynabox.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"FAIL config: {err}")
        return 1
    print(f"ok   config: {config.source}")
    checks: list[tuple[str, Callable[[Config, float], str | None]]] = [
        ("reader", _reader),
        ("display", _display),
        ("panel", _panel),
        ("outbox", _outbox),
        ("disk", _disk),
        ("clock", _clock),
        ("summary service", _summary),
        ("broker", _broker),
    ]
    failed = 0
    for name, check in checks:
        try:
            problem = check(config, args.timeout)
        except Exception as err:  # a check that crashes is a failed check, with its reason
            problem = f"{type(err).__name__}: {err}"
        print(f"{'ok  ' if problem is None else 'FAIL'} {name}" + ("" if problem is None else f": {problem}"))
        failed += problem is not None
    if args.interactive and not failed:
        failed += _interactive_panel(config)
    print("selftest: " + ("all checks passed" if not failed else f"{failed} check(s) failed"))
    return 0 if not failed else 1


def _reader(config: Config, timeout: float) -> str | None:
    """The reader is listed; a card left on it is read too, within `timeout` (a silent card must not hang
    the check: it fails it, saying what to do)."""
    import secrets

    from mynabox.adapters.pcsc import PcscReader
    from mynabox.app.cardread import JpkiReader
    from mynabox.card.certcheck import TrustStore
    from mynabox.card.errors import ProtocolError, ReadTimeout, TransportError

    name_filter = config.reader.name_filter
    try:
        with PcscReader(name_filter) as pcsc:
            if not pcsc.readers():
                return "no PC/SC reader (plug the NFC reader in)"
            reader = JpkiReader(pcsc, trust=TrustStore.jlis(), hash_key=secrets.token_bytes(32))
            try:
                report = reader.read(timeout=CARD_PRESENT_S, clock_synced=False, limit_s=timeout)
            except ReadTimeout:
                return f"the card on the reader gave no answer within {timeout:g} s (take it away)"
            except ProtocolError as err:
                print(f"     reader: the card on it is not read as a My Number Card ({type(err).__name__})")
                return None
    except TransportError as err:
        return str(err)
    if report is not None:
        print(f"     reader: card on it answers ({report.jpki.card_type.value}, {report.jpki.apdus} APDUs)")
    return None


def _display(config: Config, _timeout: float) -> str | None:
    from PIL import Image

    from mynabox.adapters.oled import DisplayError, Oled

    d = config.display
    try:
        oled = Oled(d.driver, i2c_port=d.i2c_port, i2c_address=d.i2c_address, rotate=d.rotate)
        oled.show(Image.new("1", (128, 64), 1))
        oled.clear()
    except DisplayError as err:
        return str(err)
    return None


def _panel(config: Config, _timeout: float) -> str | None:
    from mynabox.adapters.panel import PanelError, load_pin_map
    from mynabox.config.model import PinFactory

    if not config.panel.enabled:
        print("     panel: disabled in the config")
        return None
    pins = load_pin_map(config.panel.pins_file)
    if config.panel.pin_factory is PinFactory.MOCK:
        print("     panel: mock pins (no hardware)")
        return None
    _import_lgpio()
    from mynabox.adapters.gpiochip import check_lines

    try:
        found, problems = check_lines(pins)
    except PanelError as err:
        return str(err)
    for line in found:
        print(f"     panel: {line}")
    return "; ".join(problems) or None


def _import_lgpio() -> None:
    """Import lgpio in a directory of its own: on import it makes a `.lgd-nfy*` FIFO in the working
    directory and fails if it cannot (the daemon's is its RuntimeDirectory); a technician's may be
    read-only."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mynabox-lgpio-") as fifo_dir:
        cwd = os.getcwd()
        os.chdir(fifo_dir)
        try:
            import lgpio  # noqa: F401 - imported for its side effect, here and not in the caller's directory
        finally:
            os.chdir(cwd)


def _outbox(config: Config, _timeout: float) -> str | None:
    from mynabox.adapters.outbox import Outbox, OutboxError

    if not config.storage.state_dir.is_dir():
        return f"state directory {config.storage.state_dir} missing (systemd's StateDirectory= creates it)"
    path = config.storage.state_dir / "outbox.db"
    if not path.exists():
        # Not created here: selftest runs as root, and a root-owned outbox.db is a "readonly database" to the
        # service user. An existing one is safe to open: SQLite running as root gives the -wal and -shm
        # files it creates the database file's owner.
        print("     outbox: none yet (the daemon creates it at its first start)")
        return None
    try:
        with Outbox(path) as outbox:
            depth = outbox.depth()
    except OutboxError as err:
        return str(err)
    print(f"     outbox: {depth} message(s) waiting")
    return None


def _disk(config: Config, _timeout: float) -> str | None:
    state_dir = config.storage.state_dir
    free_mb = shutil.disk_usage(state_dir if state_dir.exists() else state_dir.parent).free / 2**20
    return None if free_mb >= MIN_FREE_MB else f"only {free_mb:.0f} MB free (need {MIN_FREE_MB})"


def _clock(_config: Config, _timeout: float) -> str | None:
    from mynabox.adapters.clock import clock_synced

    return None if clock_synced() else "system clock not synchronised (NTP); timestamps are flagged"


def _summary(config: Config, timeout: float) -> str | None:
    from dataclasses import replace

    from mynabox.wiring import summary_client  # the daemon's own builder: the same client it would use

    summary = replace(config.summary, timeout_s=timeout, retries=0)
    return summary_client(summary).health()


def _broker(config: Config, timeout: float) -> str | None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from mynabox.adapters.mqtt import tls_context

    mqtt, device = config.mqtt, config.device
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{device.id}-selftest", protocol=paho.MQTTv5)
    client.tls_set_context(tls_context(mqtt.ca_file, mqtt.client_cert, mqtt.client_key.path))
    result: list[str | None] = []
    client.on_connect = lambda _c, _u, _f, code, _p: result.append(None if not code.is_failure else str(code))
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    return result[0] if result else "no CONNACK (certificate refused or broker silent)"


def _interactive_panel(config: Config) -> int:
    from mynabox.adapters.panel import load_pin_map
    from mynabox.config.model import PinFactory

    if not config.panel.enabled:
        print("skip panel: disabled in the config (no buttons, LED or buzzer)")
        return 0
    pins = load_pin_map(config.panel.pins_file)
    if config.panel.pin_factory is PinFactory.MOCK:
        from gpiozero.pins.mock import MockFactory

        return interactive(pins, pin_factory=MockFactory())
    _import_lgpio()
    return interactive(pins)  # the lgpio factory on the pin map's chip (the panel check above found it)


def interactive(pins: PinMap, *, ask: Callable[[str], str] = input, pin_factory: Any = None) -> int:
    """Walk a technician through the panel: each button must post its own consent mode (a swapped pair
    fails), both held must clear, then the LED patterns and every buzzer tone are confirmed by the person."""
    steps = PanelSteps(pins, pin_factory=pin_factory)
    broken = [kept for kept in (steps.panel.buttons, steps.panel.led, steps.panel.buzzer) if not kept.working]
    for kept in broken:  # e.g. its lines are held by the running daemon (stop it first), or unwired
        print(f"FAIL {kept.part.value}: cannot be set up: {kept.problem}")
    if broken:
        steps.close()
        return len(broken)
    failed = 0
    try:
        for name, step in steps.all():
            problem = step(ask)
            failed += _verdict(name, problem is None)
    finally:
        steps.close()
    return failed


def panel_step_names() -> list[str]:
    """The names `PanelSteps.all()` gives its steps, without touching a pin."""
    names = [f"button {label}" for label, _ in BUTTONS] + ["both-buttons clear"]
    return names + [f"LED {mode.value}" for mode in LED_LOOKS] + [f"buzzer {tone.value}" for tone in Tone]


class PanelSteps:
    """The panel checks one by one, each returning None or what went wrong; shared with the bench's HIL
    suite (tests/hil), which asks through its own operator channel with a timeout."""

    def __init__(self, pins: PinMap, *, pin_factory: Any = None) -> None:
        import os

        from mynabox.adapters.gpiochip import chip_factory
        from mynabox.adapters.panel import Panel
        from mynabox.core.events import Event

        self.pins = pins
        self.events: list[Event] = []
        # No factory given: the box's own, lgpio on the pin map's chip, not gpiozero's automatic choice,
        # unless the bench names one in gpiozero's own variable (GPIOZERO_PIN_FACTORY=mock on a desk).
        forced = bool(os.environ.get("GPIOZERO_PIN_FACTORY"))
        make = chip_factory if pin_factory is None and not forced else None
        self.panel = Panel(pins, self.events.append, pin_factory=pin_factory, make_factory=make)

    def close(self) -> None:
        self.panel.close()

    def all(self) -> list[tuple[str, Step]]:
        steps: list[tuple[str, Step]] = [
            (f"button {label}", partial(self.button, label, mode)) for label, mode in BUTTONS
        ]
        steps.append(("both-buttons clear", self.clear))
        steps += [(f"LED {mode.value}", partial(self.led, mode)) for mode in LED_LOOKS]
        steps += [(f"buzzer {tone.value}", partial(self.buzzer, tone)) for tone in Tone]
        return steps

    def button(self, label: str, mode: ConsentMode, ask: Callable[[str], str]) -> str | None:
        from mynabox.core.events import ConsentPressed

        self.events.clear()
        ask(f"press and release the {label} button, then Enter: ")
        seen = list(self.events)
        if seen == [ConsentPressed(mode)]:
            return None
        if not seen:
            return f"no press seen on GPIO {self._pin_of(mode)} (button unwired or dead)"
        posted = ", ".join(_describe(e) for e in seen)
        return f"pressing {label} posted {posted}, expected {mode.value} (buttons swapped or miswired?)"

    def clear(self, ask: Callable[[str], str]) -> str | None:
        from mynabox.core.events import ClearRequested

        self.events.clear()
        ask(f"hold BOTH buttons for {self.pins.clear_hold_s + 1:g} s, release, then Enter: ")
        if any(isinstance(e, ClearRequested) for e in self.events):
            return None
        return f"no clear after both buttons were held {self.pins.clear_hold_s:g} s"

    def led(self, mode: LedMode, ask: Callable[[str], str]) -> str | None:
        self.panel.set_led(mode)
        looks = LED_LOOKS[mode]
        return None if _yes(ask(f"is the LED {looks}? [y/n] ")) else f"the LED did not look {looks}"

    def buzzer(self, tone: Tone, ask: Callable[[str], str]) -> str | None:
        from mynabox.adapters.panel import TONES

        on, _off, times = TONES[tone]
        self.panel.buzz(tone)
        heard = f"{times} beep{'s' if times > 1 else ''} of {on:g} s"
        answer = ask(f"did you hear the '{tone.value}' pattern ({heard})? [y/n] ")
        return None if _yes(answer) else f"the buzzer did not sound the '{tone.value}' pattern ({heard})"

    def _pin_of(self, mode: ConsentMode) -> Line:
        return self.pins.consent if mode is ConsentMode.ORAL_CONSENT else self.pins.emergency


def _describe(event: object) -> str:
    mode = getattr(event, "mode", None)
    return str(mode.value) if mode is not None else type(event).__name__


def _yes(answer: str) -> bool:
    return answer.strip().lower().startswith("y")


def _verdict(name: str, ok: bool) -> int:
    print(f"{'ok  ' if ok else 'FAIL'} {name}")
    sys.stdout.flush()
    return 0 if ok else 1
