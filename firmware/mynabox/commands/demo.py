"""`mynabox demo` (`make demo`): the whole box on one machine, through the real stack, with scripted taps.

A private pcscd with the vpcd virtual reader, mosquitto with TLS, the reference summary service, the
daemon (`run_box` in a thread of this process, with gpiozero's mock pins so the demo can press 同意 / 緊急),
the OLED drawn in the terminal, and the reference gateway receiver printing each summary it decrypts.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from datetime import UTC, date, datetime

from mynabox.adapters.oled import to_terminal
from mynabox.gateway.formatting import format_opened
from mynabox.payload.seal import Opened
from mynabox_testkit.inprocess import BoxThread, running_box
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer

# (patient, button to press after the tap: "consent" | "emergency" | None, card faults)
SCRIPT: tuple[tuple[str, str | None, Faults], ...] = (
    ("warfarin-elderly", "consent", Faults(latency_s=0.003, baud=424)),
    ("dialysis", "emergency", Faults(latency_s=0.003, baud=424)),
    ("not-registered", "consent", Faults()),
    ("healthy", "consent", Faults(non_jpki=True)),  # a Suica-like ISO card: not a My Number Card
)


def _show(box: BoxThread, title: str) -> None:
    oled = box.parts.oled
    if oled.last is not None:
        print(f"\n── OLED: {title} " + "─" * 40)
        print(to_terminal(oled.last))


def _wait_state(box: BoxThread, states: set[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    controller = box.parts.controller
    while controller.state.value not in states:
        if time.monotonic() > deadline:
            raise TimeoutError(f"box stayed in {controller.state.value}")
        time.sleep(0.05)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("mynabox demo: starting pcscd (vpcd), mosquitto (TLS), the reference summary service …")
    with BoxStack(device_id="amb-demo", consent_default="none", result_clear_s=3) as stack:
        assert stack.kit is not None and stack.broker is not None and stack.pcscd is not None
        stack.pcscd.use_in_process()
        received: list[Opened] = []
        printed = threading.Condition()

        def sink(opened: Opened) -> None:
            if opened.kind.value == "audit":
                return
            with printed:
                print("\n── gateway receiver " + "─" * 40)
                print(format_opened(opened, today=date.today()))
                received.append(opened)
                printed.notify_all()

        receiver = stack.gateway_receiver(sink)
        receiver.start()
        try:
            with running_box(stack) as (box, buttons):
                _show(box, "ready")
                server: VpcdCardServer | None = None
                for key, button, faults in SCRIPT:
                    card = VirtualMyNumberCard(patient(key).card_id, faults=faults)
                    print(
                        f"\n>>> tap: synthetic patient '{key}'"
                        + (" (not a My Number Card)" if faults.non_jpki else "")
                    )
                    want = len(received) + 1
                    if server is None:
                        server = VpcdCardServer(card, port=stack.pcscd.vpcd_port).start()
                    else:
                        server.insert(card)
                    if faults.non_jpki:
                        _wait_state(box, {"notice"})
                        _show(box, "not a My Number Card")
                    else:
                        _wait_state(box, {"consent"})
                        _show(box, "consent prompt")
                        assert button is not None
                        print(f">>> crew presses {'同意' if button == 'consent' else '緊急'}")
                        buttons.press(buttons.consent if button == "consent" else buttons.emergency, 0.1)
                        _wait_state(box, {"result", "notice"})
                        with printed:
                            printed.wait_for(lambda n=want: len(received) >= n, timeout=15)  # type: ignore[misc]
                        time.sleep(1.2)  # let the queue depth reach the screen
                        _show(box, "result")
                    server.remove()
                    time.sleep(1.5)
                print(f"\nmynabox demo: {len(received)} sealed messages opened by the gateway receiver.")
                print("Stopping.")
            _show(box, "stopped")
        finally:
            receiver.stop()
    return 0 if received else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options: the script above is the demo


def run(args: argparse.Namespace) -> int:
    del args
    started = datetime.now(UTC)
    code = main()
    print(f"(demo took {(datetime.now(UTC) - started).total_seconds():.1f} s)")
    return code
