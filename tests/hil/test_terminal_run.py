"""`make hil` in hardware mode with the technician on a real terminal (a pty as the run's controlling
terminal, pytest's capture on): prompts reach the person without `-s`, answers are read back with their
timeout, a question left unanswered fails its step. The "hardware" is the real stack: the private pcscd with
the vpcd reader (the test presents the cards when told to), the broker, the reference service; the LED is on
gpiozero's mock pins (GPIOZERO_PIN_FACTORY), which no one here can see, so the answers are scripted."""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import card_id_for
from mynabox_testkit.stack import REFSVC_CLIENT, BoxStack
from mynabox_testkit.vpcd import VpcdCardServer

from .prompts import next_prompt

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def hardware_rig(stack: BoxStack, path: Path) -> Path:
    kit = stack.kit
    assert kit is not None and stack.pcscd is not None
    gateway = kit.pki.client(kit.gateway)
    path.write_text(
        f"""
[rig]
name = "terminal"
mode = "hardware"
technician = "T-TTY"
[box]
config = "{stack.config_path}"
[reader]
name = "{stack.pcscd.friendly_name}"
read_timeout_s = 5
[parts]
oled = false
buttons = false
buzzer = false
[bench]
broker = "127.0.0.1:{stack.broker.port if stack.broker else 0}"
summary_url = "{stack.refsvc.base_url if stack.refsvc else ""}"
gateway_ca = "{kit.pki.ca_cert}"
gateway_cert = "{gateway.cert}"
gateway_key = "{gateway.key}"
gateway_envelope_key = "{kit.gateway_key_file}"
device_keys_dir = "{kit.device_keys_dir}"
[operator]
timeout_s = 3
""",
        encoding="utf-8",
    )
    return path


def _controlling_tty(slave: int) -> None:
    # In the child, after setsid: the pty becomes the run's /dev/tty.
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


def test_a_run_on_a_terminal_asks_there_and_a_question_left_unanswered_fails(tmp_path: Path) -> None:
    with BoxStack(device_id="amb-tty-01", workdir=tmp_path / "stack") as stack:
        assert stack.pcscd is not None and REFSVC_CLIENT
        rig = hardware_rig(stack, tmp_path / "rig.toml")
        cards = {
            "test": VirtualMyNumberCard(card_id_for("dialysis"), faults=Faults(latency_s=0.003)),
            "other": VirtualMyNumberCard("TTYOTHERCARD", faults=Faults(non_jpki=True)),
        }
        server = VpcdCardServer(cards["test"], port=stack.pcscd.vpcd_port)
        master, slave = os.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYNABOX_", "PYTEST_"))}
        env.update(stack.env(), GPIOZERO_PIN_FACTORY="mock")
        reports = tmp_path / "reports"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/hil.py"), "--rig", str(rig), "--reports", str(reports)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            pass_fds=(slave,),
            preexec_fn=lambda: _controlling_tty(slave),  # noqa: PLW1509 - a single-threaded moment in the child
        )
        os.close(slave)
        seen = ""
        asked: list[str] = []
        try:
            deadline = time.monotonic() + 180
            while proc.poll() is None and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    continue
                try:
                    seen += os.read(master, 4096).decode("utf-8", errors="replace")
                except OSError:
                    break
                while "\n>>> " in seen or "\n??? " in seen:
                    seen, line = next_prompt(seen)
                    if line is None:
                        break
                    asked.append(line)
                    if "remove the card" in line:
                        server.remove()
                    elif "hold the transit card" in line or "not a My Number Card" in line:
                        server.insert(cards["other"])
                    elif "hold the JPKI test card" in line:
                        server.insert(cards["test"])
                    elif "steadily on" in line or "LED off" in line or "is the LED off" in line:
                        os.write(master, b"y\n")
                    # "blinking?": left unanswered on purpose
            out = proc.communicate(timeout=60)[0].decode("utf-8", errors="replace")
        finally:
            if proc.poll() is None:
                proc.terminate()  # the run tears down as on Ctrl-C
                proc.wait(30)
            server.remove()
            os.close(master)
        report = json.loads((reports / "report.json").read_text(encoding="utf-8"))
    tests = {
        t["id"].rsplit("::", 1)[-1]: t for t in report["tests"]
    }  # by test function: names are the report's
    assert proc.returncode == 1, out[-3000:]
    for name in (
        "test_reader_found",
        "test_test_card_read_without_pin",
        "test_other_card_told_apart",
        "test_the_box_points_at_the_bench_services",
        "test_check_config_passes",
        "test_broker_accepts_the_box_certificate",
        "test_sealed_message_acked_and_opened_by_the_gateway",
        "test_panel[LED ok]",
        "test_panel[LED off]",
    ):
        assert tests[name]["outcome"] == "passed", (name, tests[name], out[-3000:])
    blinking = tests["test_panel[LED error]"]
    assert blinking["outcome"] == "failed"
    assert "no answer from technician T-TTY within 3 s" in blinking["reason"]
    assert tests["test_oled_test_pattern"]["outcome"] == "skipped"
    assert "the rig has no oled" in tests["test_oled_test_pattern"]["reason"]
    assert "is the LED blinking? [y/n]" in " ".join(asked)  # the prompt reached the terminal, not stdout
    assert "??? " not in out and ">>> " not in out  # prompts went to the terminal only
    answers = {a["prompt"]: a for a in report["operator"]}
    assert answers["is the LED steadily on? [y/n] "]["answer"] == "y"
    assert answers["is the LED blinking? [y/n] "]["answer"] is None
    assert all(a["technician"] == "T-TTY" for a in report["operator"])
    assert report["box"]["device_id"] == "amb-tty-01"
