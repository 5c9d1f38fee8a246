"""The emulated box's bench channel on this machine: tests/hil/ttybridge.py relays a real `TtyOperator` run's
terminal and brings its files back (tests/hil/emulated.py's session answers the prompts), and
tests/hil/linewatch.py streams level files to the technician, who answers the LED and buzzer questions from
what the lines did (a blinking line is not "steadily on"; one beep is not the 'hold-again' pattern). On the
image the level files are gpio-sim's; here plain files written by the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.panel import TONES

from .emulated import EmulatedTechnician, Levels, pulses, run_session

HIL = Path(__file__).resolve().parent
ROOT = HIL.parents[1]
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from hil.prompts import TtyOperator
op = TtyOperator("T-1", 10)
op.tell("remove the card from the reader")
answer = op.ask("is the LED steadily on? [y/n] ")
open({out!r}, "w").write(answer)
sys.exit(3)
"""


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(30)
    return sock


def test_the_bridge_relays_a_terminal_run_and_brings_its_files_back(tmp_path: Path) -> None:
    answered = tmp_path / "answered.txt"
    script = CHILD.format(tests=str(HIL.parent), out=str(answered))
    with listener() as server:
        bridge = subprocess.Popen(
            [sys.executable, str(HIL / "ttybridge.py"), "127.0.0.1", str(server.getsockname()[1]),
             "--send", str(answered), "--send", str(tmp_path / "missing.json"),
             "--", sys.executable, "-c", script],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        conn, _ = server.accept()
    asked: list[str] = []

    def answer(prompt: str) -> str | None:
        asked.append(prompt)
        return "y\n" if "[y/n]" in prompt else None

    with conn:
        session = run_session(conn, answer, tmp_path / "terminal.log", timeout_s=60)
    assert bridge.wait(10) == 0
    assert asked[0] == "remove the card from the reader"
    assert asked[1].startswith("is the LED steadily on? [y/n]")
    assert session.exit_code == 3
    assert session.files == {"answered.txt": b"y", "missing.json": b""}
    assert "??? is the LED steadily on?" in (tmp_path / "terminal.log").read_text()


@pytest.fixture
def lines(tmp_path: Path) -> Iterator[tuple[Path, Path, Levels]]:
    led, buzzer = tmp_path / "led", tmp_path / "buzzer"
    led.write_text("0\n")
    buzzer.write_text("0\n")
    levels = Levels()
    with listener() as server:
        watch = subprocess.Popen(
            [sys.executable, str(HIL / "linewatch.py"), "127.0.0.1", str(server.getsockname()[1]),
             str(led), str(buzzer)],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        conn, _ = server.accept()
    threading.Thread(target=levels.feed, args=(conn,), daemon=True).start()
    deadline = time.monotonic() + 10
    while not levels.mark() and time.monotonic() < deadline:  # watching, as on the box long before
        time.sleep(0.05)
    try:
        yield led, buzzer, levels
    finally:
        watch.terminate()
        watch.wait(10)
        conn.close()


def technician(levels: Levels) -> EmulatedTechnician:
    tones = {tone.value: spec for tone, spec in TONES.items()}
    return EmulatedTechnician(None, levels, {}, tones, "the test card", "the other card")  # type: ignore[arg-type]


def beep(buzzer: Path, on: float, off: float, times: int) -> None:
    for _ in range(times):
        buzzer.write_text("1\n")
        time.sleep(on)
        buzzer.write_text("0\n")
        time.sleep(off)


def test_the_buzzer_is_judged_from_its_line(lines: tuple[Path, Path, Levels]) -> None:
    _, buzzer, levels = lines
    tech = technician(levels)
    on, off, times = TONES[next(t for t in TONES if t.value == "hold-again")]
    tech.answer("press and release … (nothing: a prompt that is not about a sound)")  # marks the start
    beep(buzzer, on, off, times)
    assert tech.answer("did you hear the 'hold-again' pattern (2 beeps of 0.3 s)? [y/n]  (60") == "y\n"
    lengths = pulses([(g, b) for _, g, _, b in levels.since(0)])
    assert len(lengths) == 2 and all(abs(p - on) < 0.1 for p in lengths), lengths
    beep(buzzer, on, off, times)  # the next step's sound: the earlier beeps no longer count
    assert tech.answer("did you hear the 'hold-again' pattern (2 beeps of 0.3 s)? [y/n]  (60") == "y\n"
    beep(buzzer, on, off, 1)
    assert tech.answer("did you hear the 'hold-again' pattern (2 beeps of 0.3 s)? [y/n]  (60") == "n\n"


def test_the_led_is_judged_from_its_line(lines: tuple[Path, Path, Levels]) -> None:
    led, _, levels = lines
    tech = technician(levels)
    time.sleep(0.3)  # dark a while, then lit just before the question (as the suite sets it, then asks)
    led.write_text("1\n")
    assert tech.answer("is the LED steadily on? [y/n]  (60") == "y\n"
    assert tech.answer("is the LED blinking? [y/n]  (60") == "n\n"
    stop = threading.Event()

    def blink() -> None:
        while not stop.is_set():
            led.write_text("0\n" if led.read_text() == "1\n" else "1\n")
            time.sleep(0.25)

    blinker = threading.Thread(target=blink)
    blinker.start()
    try:
        assert tech.answer("is the LED blinking? [y/n]  (60") == "y\n"
        assert tech.answer("is the LED steadily on? [y/n]  (60") == "n\n"
    finally:
        stop.set()
        blinker.join()
