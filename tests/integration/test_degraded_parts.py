"""Degrade, never die (issue 24): a display, buttons, LED or buzzer that fails at start or mid-run leaves a
box that still reads cards and delivers, says so on its retained state and in selftest, and takes the part
back when it works again. On the real stack (pcscd + vpcd, mosquitto with TLS, the reference service).

Failures are real, not mocked: an I2C bus that does not exist (luma's real ssd1306 driver opens
/dev/i2c-29), the lgpio factory on a machine without the pin map's GPIO chip, the dummy display's frame
directory replaced by a file mid-run (its frames cannot be written: the same path as an I2C write that
fails), and gpiozero mock pins whose lines raise EIO mid-run (in-process: a subprocess has no mock pins).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.config import load_config
from mynabox_testkit.inprocess import BoxThread
from mynabox_testkit.stack import BoxStack
from support.daemon import MYNABOX, daemon_env, run_daemon, tap
from support.flakypins import FlakyFactory
from support.notify import NotifySocket
from support.wait import wait_for

from .subscriber import Subscriber

pytestmark = pytest.mark.stack
DEVICE = "amb-degrade"
ALL_PANEL = "buttons+led+buzzer"


@pytest.fixture(scope="module")
def stack() -> Iterator[BoxStack]:
    with BoxStack(device_id=DEVICE, consent_default="oral") as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


@pytest.fixture
def states(stack: BoxStack, tmp_path: Path) -> Iterator[Subscriber]:
    # One gateway connection only: the broker makes the certificate's name the client id.
    subscriber = Subscriber(stack, f"gw-{tmp_path.name}", f"mynabox/{DEVICE}/#")
    yield subscriber
    subscriber.close()


def last_state(states: Subscriber) -> dict[str, object]:
    payloads = states.payloads("state")
    return json.loads(payloads[-1]) if payloads else {}


def delivered(states: Subscriber) -> int:
    """Sealed summaries the broker handed the gateway side (PUBACKed to the box)."""
    return len(states.payloads("summary"))


def tap_and_deliver(stack: BoxStack, states: Subscriber, log: Path | None = None) -> None:
    before = delivered(states)
    card = tap(stack, "warfarin-elderly")
    try:
        assert wait_for(lambda: delivered(states) > before, 20), log.read_text() if log else "no summary"
    finally:
        card.remove()


def config_with(stack: BoxStack, tmp_path: Path, extra: dict[str, dict[str, object]]) -> Path:
    """The stack's config with some sections changed, copied beside the test (the stack's is put back)."""
    before = stack.config_extra
    stack.config_extra = extra
    try:
        path = tmp_path / "config.toml"
        shutil.copyfile(stack.write_config(), path)
    finally:
        stack.config_extra = before
        stack.write_config()
    return path


def start(
    stack: BoxStack, config: Path, notify: NotifySocket, log: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    # cwd: lgpio writes its .lgd-nfy* FIFOs where the daemon runs (the unit's WorkingDirectory=/run/mynabox)
    with log.open("ab") as out:
        return run_daemon(daemon_env(stack, notify, watchdog_usec=2_000_000), out, config, cwd=cwd)


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()


def test_no_display_and_no_gpio_chip_at_start_still_reads_and_delivers(
    stack: BoxStack, states: Subscriber, tmp_path: Path
) -> None:
    """What a real box with a loose OLED cable and no usable GPIO chip did before: exit 1 at every start."""
    config = config_with(
        stack,
        tmp_path,
        {
            "display": {"driver": "ssd1306", "i2c_port": 29},
            "panel": {"enabled": True, "pin_factory": "lgpio"},
        },
    )
    frames = f'frames_dir = "{stack.frames_dir}"\n'  # the dummy's only
    config.write_text(config.read_text(encoding="utf-8").replace(frames, ""), encoding="utf-8")
    notify, log = NotifySocket(tmp_path / "notify.sock"), tmp_path / "daemon.log"
    daemon = start(stack, config, notify, log, tmp_path)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        # The first retained state already names them (no "all well" first).
        assert wait_for(lambda: bool(last_state(states)), 10)
        assert last_state(states)["failed_parts"] == "display+" + ALL_PANEL
        assert json.loads(states.payloads("state")[0])["failed_parts"] == "display+" + ALL_PANEL
        tap_and_deliver(stack, states, log)  # consent.default = oral stands in for the buttons
        text = log.read_text()
        assert "display failed at start" in text and "i2c-29" in text
        assert "buttons failed at start" in text and "no GPIO chip labelled" in text
        assert daemon.poll() is None
    finally:
        stop(daemon)
        notify.close()
    assert last_state(states)["state"] == "stopped"

    # selftest names both; the daemon ran anyway. lgpio's FIFO stays out of the technician's directory.
    technician = tmp_path / "technician"
    technician.mkdir()
    out = subprocess.run(
        [MYNABOX, "selftest", "--config", str(config), "--timeout", "2"],
        env=dict(os.environ, **stack.env()),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=technician,
        check=False,
    ).stdout
    assert not list(technician.iterdir())
    assert "FAIL display: ssd1306 on i2c-29" in out, out
    assert "FAIL panel: no GPIO chip labelled pinctrl-bcm2711 or pinctrl-bcm2835" in out, out


def test_a_display_lost_mid_run_comes_back_without_a_restart(
    stack: BoxStack, states: Subscriber, tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    config = config_with(stack, tmp_path, {"display": {"frames_dir": str(frames)}})
    notify, log = NotifySocket(tmp_path / "notify.sock"), tmp_path / "daemon.log"
    daemon = start(stack, config, notify, log, tmp_path)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        assert wait_for(lambda: last_state(states).get("failed_parts") == "", 10)
        assert (frames / "current.png").is_file()
        # The display's device goes away while the screen stands still: the retry's probe finds it.
        shutil.rmtree(frames)
        frames.write_bytes(b"")
        assert wait_for(lambda: last_state(states).get("failed_parts") == "display", 10), log.read_text()
        assert "display failed, the box goes on without it" in log.read_text()
        tap_and_deliver(stack, states, log)
        # It comes back: within a retry (5 s) it is opened again and shows the screen the box is on.
        frames.unlink()
        assert wait_for(lambda: last_state(states).get("failed_parts") == "", 15), log.read_text()
        assert wait_for((frames / "current.png").is_file, 5)
        assert "display works again" in log.read_text()
        tap_and_deliver(stack, states, log)
        assert daemon.poll() is None
    finally:
        stop(daemon)
        notify.close()


def test_buttons_led_and_buzzer_lost_mid_run_and_back(stack: BoxStack, states: Subscriber) -> None:
    """In-process (`run_box`, as `mynabox run`): gpiozero mock pins whose lines fail with EIO mid-run."""
    flaky = FlakyFactory()
    box = BoxThread(load_config(stack.config_path), pin_factory=flaky)
    box.start()
    try:
        assert box.wait_ready(10)
        assert wait_for(lambda: last_state(states).get("failed_parts") == "", 10)
        flaky.broken = {"GPIO17", "GPIO22", "GPIO23"}  # 同意, LED, buzzer
        # The next effect on the LED finds it gone at once, the retry's probe the buttons and buzzer.
        tap_and_deliver(stack, states)
        assert wait_for(lambda: last_state(states).get("failed_parts") == ALL_PANEL, 10)
        assert box.running
        tap_and_deliver(stack, states)  # still delivering without them
        flaky.broken.clear()
        assert wait_for(lambda: last_state(states).get("failed_parts") == "", 10)
        assert box.parts is not None and box.parts.panel.failed() == ()
    finally:
        box.stop()
        flaky.reset()
    assert box.code == 0


def test_a_line_failing_under_a_running_pattern_is_a_failed_part_not_a_traceback(
    stack: BoxStack, states: Subscriber, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The idle LED's heartbeat runs on gpiozero's blink thread: its line fails there, not in an effect."""
    escaped: list[threading.ExceptHookArgs] = []  # what Python would print as a traceback on stderr
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    flaky = FlakyFactory()
    box = BoxThread(load_config(stack.config_path), pin_factory=flaky)
    box.start()
    try:
        assert box.wait_ready(10)
        assert wait_for(lambda: last_state(states).get("failed_parts") == "", 10)
        led = flaky.pin("GPIO22")
        assert wait_for(lambda: len(led.states) > 2, 5)  # the heartbeat (0.1 s on every 3 s) is blinking
        flaky.broken = {"GPIO22"}
        assert wait_for(lambda: last_state(states).get("failed_parts") == "led", 15)
        assert box.running
        tap_and_deliver(stack, states)
        driven = len(led.states)
        flaky.broken.clear()
        assert wait_for(lambda: last_state(states).get("failed_parts") == "", 10)
        assert wait_for(lambda: len(led.states) > driven, 5)  # reopened, it shows the box's mode again
    finally:
        box.stop()
        flaky.reset()
    assert box.code == 0
    assert escaped == []
    assert "Traceback" not in capfd.readouterr().err
