"""The emulated box's technician: the host's side of `make hil` on the image under qemu
(image-build/hil-test.py).

The suite runs ON the box, as on a bench; its prompts reach the host over tests/hil/ttybridge.py, and this
technician answers each by acting for real on the emulated hardware and saying what it saw: cards go in and
out of qemu's usb-ccid reader (VSCard), buttons are pressed by pulling gpio-sim's lines as the board is
wired (the packaged pin map, whatever pin map the rig file gives the suite), and the LED's and the buzzer's
answers come from their lines' levels as tests/hil/linewatch.py streams them. Nothing is answered "y"
without the thing seen: a rig whose pin map swaps the buttons fails "button 同意: press seen".
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Protocol

from .prompts import next_prompt

LED_WINDOW_S = 1.2  # a full period of the slowest blink asked about
BEEP_SLACK_S = 0.35  # still tells the 0.08 s chirp from the 0.8 s tone


class Hands(Protocol):
    """What the technician does to the emulated box."""

    def press(self, line: int, hold_s: float) -> None: ...

    def hold(self, lines: tuple[int, ...], hold_s: float) -> None: ...

    def insert(self, card: str) -> None: ...  # "test" or "other"

    def remove(self) -> None: ...


@dataclass
class Levels:
    """The LED's and the buzzer's levels as linewatch sends them: (host time, guest time, LED, buzzer)."""

    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, conn: socket.socket) -> None:
        """Reads the watcher's lines until it goes away (run in a thread)."""
        rest = b""
        while chunk := _recv(conn):
            rest += chunk
            *lines, rest = rest.split(b"\n")
            for line in lines:
                parts = line.split()
                if len(parts) == 3:
                    try:
                        sample = (time.monotonic(), float(parts[0]), int(parts[1]), int(parts[2]))
                    except ValueError:
                        continue
                    with self.lock:
                        self.samples.append(sample)

    def mark(self) -> int:
        with self.lock:
            return len(self.samples)

    def since(self, mark: int) -> list[tuple[float, float, int, int]]:
        with self.lock:
            return self.samples[mark:]


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(4096)
    except OSError:  # closed at the end of the run
        return b""


def pulses(samples: list[tuple[float, int]]) -> list[float]:
    """The lengths (s) of the high periods that began and ended within `samples` ((time, level) pairs)."""
    found, rose = [], None
    for (_, a), (t, b) in pairwise(samples):
        if not a and b:
            rose = t
        elif a and not b and rose is not None:
            found.append(t - rose)
            rose = None
    return found


@dataclass
class EmulatedTechnician:
    hands: Hands
    levels: Levels
    wiring: dict[str, int]  # consent, emergency, led, buzzer: the board's lines (gpio-sim offsets)
    tones: dict[str, tuple[float, float, int]]  # tone name: (on s, off s, times), the box's table
    test_card: str
    other_card: str
    heard_from: int = 0  # the levels' mark after which a sound counts (one recalls only the last one)
    actions: list[str] = field(default_factory=list)

    def answer(self, prompt: str) -> str | None:
        """What to type for `prompt` (None: an instruction, done, nothing to type)."""
        if "did you hear the '" not in prompt:
            self.heard_from = self.levels.mark()
        if "remove the card" in prompt:
            self.hands.remove()
            return self._did("card removed", None)
        if "hold" in prompt and self.other_card in prompt:
            self.hands.insert("other")
            return self._did("other card in", None)
        if "hold" in prompt and self.test_card in prompt:
            if "press 同意" in prompt:
                self.hands.press(self.wiring["consent"], 0.4)
            self.hands.insert("test")
            return self._did("test card in", None)
        if "BOTH" in prompt:
            told = re.search(r"for ([0-9.]+) s", prompt)
            self.hands.hold((self.wiring["consent"], self.wiring["emergency"]), float(told[1]) if told else 3)
            return self._did("both held", "\n")
        if "press and release the " in prompt:
            button = "consent" if "同意" in prompt else "emergency"
            self.hands.press(self.wiring[button], 0.4)
            return self._did(f"{button} pressed (GPIO{self.wiring[button]})", "\n")
        if "is the LED" in prompt:
            return self._did("LED looked at", "y\n" if self.led_looks(prompt) else "n\n")
        if "did you hear the '" in prompt:
            return self._did("buzzer listened to", "y\n" if self.heard(prompt) else "n\n")
        if "REBOOTS" in prompt or "the OLED show" in prompt:  # no reboot here; the board has no display
            return self._did("declined / nothing seen", "n\n")
        if re.search(r"\(\d+(\.\d+)?$", prompt):  # a question ("… (60 s)") not understood: not seen
            return self._did("question not understood", "n\n")
        return self._did("instruction not understood", None)

    def _did(self, what: str, typed: str | None) -> str | None:
        self.actions.append(f"{what} -> {typed!r}")
        return typed

    def led_looks(self, prompt: str) -> bool:
        # only what the line did after the question (the level before it may be the previous mode's)
        time.sleep(0.2)
        mark = self.levels.mark()
        time.sleep(LED_WINDOW_S)
        seen = {led for _, _, led, _ in self.levels.since(mark)}
        if "blinking" in prompt:
            return seen == {0, 1}
        return seen == ({1} if "steadily on" in prompt else {0})

    def heard(self, prompt: str) -> bool:
        name = re.search(r"did you hear the '([^']+)'", prompt)
        if name is None or name[1] not in self.tones:
            return False
        on, off, times = self.tones[name[1]]
        time.sleep(times * (on + off) + 0.3)  # as a person listens to the end of it
        # from the level just before the mark: a beep that began right after it has its rising edge
        samples = [(guest, buzzer) for _, guest, _, buzzer in self.levels.since(max(self.heard_from - 1, 0))]
        beeps = pulses(samples)
        self.heard_from = self.levels.mark()  # the next question is about the next sound
        # count and rough length, as an ear judges them (a 0.08 s chirp vs a 0.8 s tone), with room for a
        # sampler that TCG or a loaded host holds up for a few hundred ms (seen: a 0.3 s beep read as 0.5 s)
        return len(beeps) == times and all(abs(p - on) < BEEP_SLACK_S for p in beeps)


@dataclass
class Session:
    """One suite run's terminal: its text (to the log), the prompts answered, its exit status and files."""

    log: Path
    exit_code: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)


def run_session(
    conn: socket.socket, answer: Callable[[str], str | None], log: Path, timeout_s: float
) -> Session:
    """Reads the bridged terminal until `@@END@@` (or `timeout_s`), answering every prompt as it comes."""
    session = Session(log)
    raw, text = b"", ""
    deadline = time.monotonic() + timeout_s
    conn.settimeout(1.0)
    with log.open("wb") as out:
        while b"@@END@@\n" not in raw and time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            raw += chunk
            if b"@@HIL-EXIT " in raw:
                continue  # the run is over: the rest is its files
            text += chunk.decode("utf-8", errors="replace").replace("\r", "")
            while True:
                text, prompt = next_prompt(text)
                if prompt is None:
                    break
                session.prompts.append(prompt)
                typed = answer(prompt)
                if typed is not None:
                    conn.sendall(typed.encode())
    end = re.search(rb"@@HIL-EXIT (-?\d+)@@\n", raw)
    if end is not None:
        session.exit_code = int(end[1])
        rest = raw[end.end() :]
        while head := re.match(rb"@@FILE (\S+) (\d+)@@\n", rest):
            size = int(head[2])
            session.files[head[1].decode()] = rest[head.end() : head.end() + size]
            rest = rest[head.end() + size :]
    return session
