"""The technician's channel: prompts and answers that do not go through pytest's captured stdout.

On a real bench the prompt goes to the controlling terminal (`/dev/tty`), so `make hil` needs no `-s`;
the answer is read with a timeout (no answer is a failed step, never a hang). In the virtual rig a scripted
technician answers. Every prompt and answer is kept, with the technician's id and the time, for the report.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


class NoAnswer(Exception):
    """The technician did not answer in time (or there is no terminal to ask on)."""


@dataclass
class Answer:
    step: str  # the test that asked
    prompt: str
    answer: str | None  # None: no answer (timed out)
    technician: str
    asked_at: str  # UTC, ISO 8601
    answered_at: str | None
    waited_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Operator:
    """`ask` waits for an answer; `tell` gives an instruction whose result the test itself watches for."""

    def __init__(self, technician: str, timeout_s: float) -> None:
        self.technician = technician
        self.timeout_s = timeout_s
        self.step = "?"
        self.answers: list[Answer] = []

    def ask(self, prompt: str, *, timeout_s: float | None = None) -> str:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        asked_at, started = _now(), time.monotonic()
        record = Answer(self.step, prompt, None, self.technician, asked_at, None, 0.0)
        self.answers.append(record)
        try:
            answer = self._ask(prompt, timeout)
        finally:
            record.waited_s = round(time.monotonic() - started, 3)
        if answer is None:
            raise NoAnswer(f"no answer from technician {self.technician} within {timeout:g} s to: {prompt!r}")
        record.answer, record.answered_at = answer, _now()
        return answer

    def tell(self, instruction: str) -> None:
        self.answers.append(
            Answer(self.step, instruction, "(instruction)", self.technician, _now(), None, 0.0)
        )
        self._tell(instruction)

    def yes(self, question: str, *, timeout_s: float | None = None) -> bool:
        return self.ask(f"{question} [y/n] ", timeout_s=timeout_s).strip().lower().startswith("y")

    def _ask(self, prompt: str, timeout: float) -> str | None:
        raise NotImplementedError

    def _tell(self, instruction: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the terminal or stop the scripted technician."""


class TtyOperator(Operator):
    """Asks on the controlling terminal, beside pytest's capture."""

    def __init__(self, technician: str, timeout_s: float, tty: str = "/dev/tty") -> None:
        super().__init__(technician, timeout_s)
        self._tty_path = tty
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self._tty_path, os.O_RDWR | os.O_NOCTTY)
            except OSError as err:
                raise NoAnswer(f"no terminal to ask the technician on ({self._tty_path}: {err})") from err
        return self._fd

    def _write(self, text: str) -> None:
        os.write(self._open(), text.encode("utf-8"))

    def _tell(self, instruction: str) -> None:
        self._write(f"\n>>> {instruction}\n")

    def _ask(self, prompt: str, timeout: float) -> str | None:
        fd = self._open()
        termios_flush(fd)
        self._write(f"\n??? {prompt} ({timeout:g} s) ")
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self._write("\n(no answer: step failed)\n")
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    return None
                line += chunk
        return line.decode("utf-8", errors="replace").strip()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def next_prompt(text: str) -> tuple[str, str | None]:
    """Cut the first complete prompt `TtyOperator` wrote (a `>>>` line, or a `???` question up to its
    timeout) off a terminal's text: (the rest, the prompt), or (text, None) when none is complete yet.
    For whatever sits at the terminal instead of a person (tests; the emulated box's technician)."""
    starts = [i for i in (text.find("\n>>> "), text.find("\n??? ")) if i >= 0]
    if not starts:
        return text, None
    start = min(starts)
    body = text[start + 5 :]
    end = body.find("\n") if text[start + 1] == ">" else body.find(" s) ")
    if end < 0:
        return text, None
    return body[end + 1 :], body[:end]


def termios_flush(fd: int) -> None:
    """Drop what was typed before the question (an early Enter must not answer the next prompt)."""
    try:
        import termios

        termios.tcflush(fd, termios.TCIFLUSH)
    except (ImportError, OSError):
        pass


class ScriptedOperator(Operator):
    """The virtual rig's channel: each prompt goes to a technician callable in its own thread (it may press
    pins, present cards, look at the display); its return value is the answer. A technician that never
    returns makes the step time out, exactly as a person who walked away."""

    def __init__(self, technician: str, timeout_s: float, act: Callable[[str], str | None]) -> None:
        super().__init__(technician, timeout_s)
        self._act = act
        self._gone = threading.Event()

    def _run(self, prompt: str, timeout: float) -> str | None:
        result: list[str | None] = []
        worker = threading.Thread(target=lambda: result.append(self._act(prompt)), daemon=True)
        worker.start()
        worker.join(timeout)
        return result[0] if result else None

    def _ask(self, prompt: str, timeout: float) -> str | None:
        return self._run(prompt, timeout)

    def _tell(self, instruction: str) -> None:
        self._run(instruction, self.timeout_s)
