"""`mynabox selftest`: one line per check, exit 0 only when every check passes.

Checks: config, reader present, OLED answers, outbox healthy, free disk, clock synced, summary service
reachable with our certificate, broker reachable with our certificate. `--interactive` then walks a bench
technician through the buttons, the LED and the buzzer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mynabox.adapters.panel import PinMap
    from mynabox.config import Config

MIN_FREE_MB = 200
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
    from mynabox.card.certcheck import TrustStore
    from mynabox.card.errors import ProtocolError, ReadTimeout, TransportError
    from mynabox.cardread import JpkiReader

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
        print(f"     reader: card on it answers ({report.card_type.value}, {report.apdus} APDUs)")
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


def _outbox(config: Config, _timeout: float) -> str | None:
    from mynabox.adapters.outbox import Outbox, OutboxError

    if not config.storage.state_dir.is_dir():
        return f"state directory {config.storage.state_dir} missing (systemd's StateDirectory= creates it)"
    path = config.storage.state_dir / "outbox.db"
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

    summary = replace(config.summary, timeout_s=timeout, retries=0)
    return summary.client().health()


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

    if not config.panel.enabled:
        print("skip panel: disabled in the config (no buttons, LED or buzzer)")
        return 0
    factory = None
    if config.panel.pin_factory == "mock":
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    return interactive(load_pin_map(config.panel.pins_file), pin_factory=factory)


def interactive(pins: PinMap, *, ask: Callable[[str], str] = input, pin_factory: Any = None) -> int:
    """Walk a technician through the panel: each button must post its own consent mode (a swapped pair
    fails), both held must clear, then the LED patterns and every buzzer tone are confirmed by the person."""
    from mynabox.adapters.panel import Panel
    from mynabox.core.effects import LedMode, Tone
    from mynabox.core.events import ClearRequested, ConsentPressed, Event
    from mynabox.payload.audit import ConsentMode

    events: list[Event] = []
    panel = Panel(pins, events.append, pin_factory=pin_factory)
    failed = 0
    try:
        for label, mode in (
            ("同意 (consent)", ConsentMode.ORAL_CONSENT),
            ("緊急 (emergency)", ConsentMode.LIFE_SAVING_EXCEPTION),
        ):
            events.clear()
            ask(f"press and release the {label} button, then Enter: ")
            failed += _verdict(f"button {label}", events == [ConsentPressed(mode)])
        events.clear()
        ask(f"hold BOTH buttons for {pins.clear_hold_s + 1:g} s, release, then Enter: ")
        failed += _verdict("both-buttons clear", any(isinstance(e, ClearRequested) for e in events))
        for led, looks in ((LedMode.OK, "steadily on"), (LedMode.ERROR, "blinking"), (LedMode.OFF, "off")):
            panel.set_led(led)
            failed += _verdict(f"LED {led.value}", _yes(ask(f"is the LED {looks}? [y/n] ")))
        for tone in Tone:
            panel.buzz(tone)
            failed += _verdict(
                f"buzzer {tone.value}", _yes(ask(f"did you hear the '{tone.value}' pattern? [y/n] "))
            )
    finally:
        panel.close()
    return failed


def _yes(answer: str) -> bool:
    return answer.strip().lower().startswith("y")


def _verdict(name: str, ok: bool) -> int:
    print(f"{'ok  ' if ok else 'FAIL'} {name}")
    sys.stdout.flush()
    return 0 if ok else 1
