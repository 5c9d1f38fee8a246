"""Card steps of the suite with their own time bounds: a card that never answers fails the step, it never
hangs the bench (whatever the firmware's own read bound is)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from smartcard import scard

T = TypeVar("T")


class Overrun(Exception):
    """A step did not finish within its bound."""


def bounded(step: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run `step` in a daemon thread; raise Overrun after `timeout_s` (the thread is left to end when the
    card is taken away: PC/SC then returns from the stuck transmit)."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(step())
        except BaseException as err:  # handed to the caller's thread as is
            error.append(err)

    worker = threading.Thread(target=run, name=f"hil-{what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise Overrun(f"{what} did not finish within {timeout_s:g} s")
    if error:
        raise error[0]
    return result[0]


class RecordingTransport:
    """A connected card with every command's INS kept, refusing VERIFY (0x20) outright: the bench never
    sends a PIN to a card, and this holds on a real reader where no virtual card keeps a log."""

    def __init__(self, card: object) -> None:
        self._card = card
        self.reader_name: str = card.reader_name  # type: ignore[attr-defined]
        self.instructions: list[int] = []

    def transmit(self, command: bytes) -> bytes:
        self.instructions.append(command[1] if len(command) > 1 else -1)
        if len(command) > 1 and command[1] == 0x20:
            raise AssertionError("VERIFY (a PIN) was about to be sent to the card")
        response: bytes = self._card.transmit(command)  # type: ignore[attr-defined]
        return response


def wait_removed(reader: str, timeout_s: float) -> bool:
    """True once PC/SC reports the reader's slot empty within `timeout_s`."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return False
    try:
        state = scard.SCARD_STATE_UNAWARE
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            hresult, states = scard.SCardGetStatusChange(context, max(left_ms, 0), [(reader, state)])
            if hresult == scard.SCARD_S_SUCCESS:
                state = states[0][1] & ~scard.SCARD_STATE_CHANGED
                if state & scard.SCARD_STATE_EMPTY:
                    return True
            if left_ms <= 0 or hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
                return False
    finally:
        scard.SCardReleaseContext(context)
