"""Pieces of the boot test's checks (image-build/boot-test.py) that run without the image: reading
`gpioinfo`'s lines (libgpiod 2's format, the image's, and libgpiod 1's) and reading the box's retained state
from a real mosquitto with the gateway's certificate while a real receiver holds the gateway's session."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.gateway.subscriber import Receiver, ReceiverSettings
from mynabox.payload.seal import Opener
from mynabox.tls import client_context
from mynabox_testkit.broker import BrokerTls, Mosquitto
from mynabox_testkit.tlsfiles import make_test_pki

from .scripts import load

PINS = {"consent": 17, "emergency": 27, "led": 22, "buzzer": 23}


def boot_test() -> ModuleType:
    return load("boot-test")


GPIOINFO_2 = """gpiochip0 - 54 lines:
\tline  16:\t"GPIO16"        \tinput
\tline  17:\t"GPIO17"        \tinput bias=pull-up consumer="lg"
\tline  22:\t"GPIO22"        \toutput consumer="lg"
\tline  23:\t"GPIO23"        \toutput consumer="lg"
\tline  27:\t"GPIO27"        \tinput bias=pull-up consumer="lg"
"""
GPIOINFO_1 = """gpiochip0 - 54 lines:
\tline  17:   "GPIO17"       "lg"   input  active-high [used]
\tline  22:   "GPIO22"       "lg"  output  active-high [used]
\tline  23:   "GPIO23"     unused  output  active-high
\tline  27:   "GPIO27"       "lg"   input  active-high [used]
"""


def test_gpioinfo_lines_are_read_in_both_libgpiod_formats() -> None:
    read = boot_test().gpioinfo_lines
    assert read(GPIOINFO_2, PINS) == {
        "consent": ("input", "lg"),
        "emergency": ("input", "lg"),
        "led": ("output", "lg"),
        "buzzer": ("output", "lg"),
    }
    old = read(GPIOINFO_1, PINS)
    assert old["consent"] == ("input", "lg") and old["buzzer"] == ("output", "")
    # a line the daemon does not hold, or a map whose line is missing, is not reported as held
    assert "consent" not in read(GPIOINFO_2.replace('"GPIO17"', '"GPIO18"'), PINS)


@pytest.mark.stack
def test_the_retained_state_is_read_while_the_receiver_holds_the_gateway_session(tmp_path: Path) -> None:
    bt = boot_test()
    mqtt = tmp_path / "vehicle" / "mqtt"
    make_test_pki(mqtt, server_names=("localhost", "127.0.0.1"), clients=(bt.DEVICE_ID, "gateway"))
    tls = BrokerTls(mqtt / "ca.pem", mqtt / "server.pem", mqtt / "server.key")
    with Mosquitto(tls, tmp_path / "broker") as broker:
        device = paho.Client(CallbackAPIVersion.VERSION2, client_id=bt.DEVICE_ID, protocol=paho.MQTTv5)
        device.tls_set_context(
            client_context(
                mqtt / "ca.pem", mqtt / f"client-{bt.DEVICE_ID}.pem", mqtt / f"client-{bt.DEVICE_ID}.key"
            )
        )
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        state = {"state": "ready", "failed_parts": "display"}
        device.publish(
            f"mynabox/{bt.DEVICE_ID}/state", json.dumps(state), qos=1, retain=True
        ).wait_for_publish(10)
        device.disconnect()
        device.loop_stop()

        settings = ReceiverSettings("127.0.0.1", broker.port, mqtt / "ca.pem", mqtt / "client-gateway.pem",
                                    mqtt / "client-gateway.key", client_id="gateway")  # fmt: skip
        gateway_key = ec.generate_private_key(ec.SECP256R1())
        opener = Opener(gateway_key, {}, max_age=timedelta(days=1), max_skew=timedelta(minutes=5),
                        max_size=1 << 20)  # fmt: skip
        seen = SeenStore(tmp_path / "seen.db")
        receiver = Receiver(settings, ReceiverCore(opener, seen, lambda _m: None))
        receiver.start()
        try:
            assert receiver.subscribed.wait(10)
            box = SimpleNamespace(work=tmp_path, broker=broker)
            receiver.subscribed.clear()
            assert bt.retained_state(box, timeout=10) == state
            # the receiver was put out for a moment; it comes back and subscribes again
            assert receiver.subscribed.wait(15), broker.log()[-2000:]
        finally:
            receiver.stop()
            seen.close()


# The first boot's lines as the emulated box's console gives them (the kernel's, PID 1's through the kernel
# log, the handover's written to /dev/kmsg, and the journal's copy of the handover's, which has no stamp of
# its own and must not count), in the order they came.
SOFTDOG_CONSOLE = (
    "[   12.022192] i6300ESB timer 0000:00:02.0: initialized. heartbeat=30 sec (nowayout=0)\r\n"
    "Begin: Loading essential drivers ... [   12.310000] "
    "softdog: initialized. soft_noboot=0 soft_margin=120 sec soft_panic=0 (nowayout=0)\r\n"
    "[   12.310100] softdog:              soft_reboot_cmd=<not set> soft_active_on_boot=1\r\n"
    "\x1b[?7h[   21.704533] systemd[1]: Using hardware watchdog 'i6300ESB timer', version 0, device "
    "/dev/watchdog-hw\r\n"
    "[   22.910000] mynabox: softdog: disarmed (watchdog1): PID 1 holds the hardware watchdog "
    "'i6300ESB timer' (watchdog0)\r\n"
    "mynabox-softdog-handover[201]: mynabox: softdog: disarmed (watchdog1): PID 1 holds the hardware\r\n"
)


def test_the_softdog_handover_is_read_from_the_first_boots_console() -> None:
    seen = boot_test().softdog_handover(SOFTDOG_CONSOLE)
    assert seen == {
        "margin_s": 120,
        "armed": True,
        "pid1_watchdog": "i6300ESB timer",
        "pid1_device": "/dev/watchdog-hw",
        "disarmed": "disarmed (watchdog1): PID 1 holds the hardware watchdog 'i6300ESB timer' (watchdog0)",
        "loaded_at_s": 12.31,
        "hw_driver_at_s": 12.022192,
        "armed_before_hw_driver": False,  # the old initramfs: udev probed the i6300esb first
        "held_at_s": 21.704533,
        "disarmed_at_s": 22.91,
        "load_to_disarm_s": 10.6,
    }


def test_softdog_armed_before_udev_loads_the_hardware_driver_is_seen() -> None:
    """The image's order now: softdog first of init-top, the i6300esb's driver after (it stops a timer a
    trial boot's stage armed: no gap). A console without the driver's line says nothing either way."""
    read = boot_test().softdog_handover
    lines = SOFTDOG_CONSOLE.split("\r\n", 1)[1]
    now = lines.replace("[   21.704533] systemd", "[   14.5] i6300ESB timer 0000:00:02.0: initialized. "
                        "heartbeat=30 sec (nowayout=0)\r\n[   21.704533] systemd")  # fmt: skip
    assert read(now)["armed_before_hw_driver"] is True and read(now)["hw_driver_at_s"] == 14.5
    assert read(lines)["armed_before_hw_driver"] is None


def test_a_boot_without_the_handover_shows_none_and_an_unarmed_softdog_is_said() -> None:
    read = boot_test().softdog_handover
    unarmed = read(SOFTDOG_CONSOLE.replace("soft_active_on_boot=1", "soft_active_on_boot=0"))
    assert unarmed["armed"] is False
    before = read(SOFTDOG_CONSOLE.split("[   22.91", maxsplit=1)[0])  # the old image: no handover line
    assert before["disarmed"] is None and before["load_to_disarm_s"] is None
    # PID 1 on softdog's node (the old numbering, watchdog0 by default): not the link
    assert (
        read(SOFTDOG_CONSOLE.replace("device /dev/watchdog-hw", "device /dev/watchdog0"))["pid1_device"]
        == "/dev/watchdog0"
    )
