"""A part the box can do without (display, buttons, LED, buzzer): opened, used, reopened after it fails.

Degrade, never die: whatever a library raises while a part is opened, driven or probed — gpiozero's,
lgpio's, luma's, the kernel's — puts the part out of use: it is closed, logged once, reported as a
`PartHealth` event, and opened again at the next `retry()` (the loop's housekeeping calls it every few
seconds). Every exception is caught here on purpose: a loose cable must never stop the reads and
deliveries, and the libraries' error types are many and undocumented (lgpio.error, OSError, RuntimeError,
GPIOZeroError, luma's DeviceNotFoundError…).

Not thread-safe by design: the decision loop is the one thread that opens, uses and retries parts. A
part's own threads (gpiozero's blink thread, a button's edge callback) only `report()` a failure; the loop's
next `use()` or `retry()` (within RETRY_S) takes the part out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from mynabox.core.events import Event, PartHealth
from mynabox.vocab import Part

log = logging.getLogger(__name__)

T = TypeVar("T")


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class Kept(Generic[T]):
    def __init__(
        self,
        part: Part,
        opener: Callable[[], T],
        post: Callable[[Event], None],
        closer: Callable[[T], None],
        *,
        probe: Callable[[T], None] | None = None,
        restored: Callable[[T], None] | None = None,
    ) -> None:
        """`probe(device)` raises when a working part went away; `restored(device)` runs when it is back."""
        self.part = part
        self._open = opener
        self._post = post
        self._close = closer
        self._probe = probe
        self._restored = restored
        self.device: T | None = None
        self._stale: T | None = None  # a failed device whose close failed too: closed before reopening
        self.problem: str | None = None  # why the part is out of use
        self._reported: tuple[T, BaseException] | None = None  # a failure seen on another thread
        self._report_lock = threading.Lock()

    @property
    def working(self) -> bool:
        return self.device is not None

    def start(self) -> None:
        """Open the part; a failure is logged and remembered, not posted (the first state carries it)."""
        try:
            self.device = self._open()
        except Exception as err:
            self.problem = _describe(err)
            log.warning("%s failed at start, the box goes on without it: %s", self.part.value, self.problem)

    def report(self, device: T, err: BaseException) -> None:
        """From any thread: `device` failed there. The loop's next `use` or `retry` takes it out of use."""
        with self._report_lock:
            self._reported = (device, err)

    def _take_report(self) -> bool:
        """True when a report took the part out of use."""
        with self._report_lock:
            reported, self._reported = self._reported, None
        # A report from a device already closed (and perhaps reopened since) is news no more.
        if reported is None or reported[0] is not self.device:
            return False
        self._lost(reported[1])
        return True

    def use(self, action: Callable[[T], object]) -> None:
        """Drive the part; if it fails, it goes out of use until a retry opens it again."""
        self._take_report()
        if self.device is None:
            return
        try:
            action(self.device)
        except Exception as err:
            self._lost(err)

    def retry(self) -> None:
        """Open a failed part again, or probe a working one."""
        if self._take_report():
            return  # out of use now, reopened at the next retry like any failure
        if self.device is not None:
            if self._probe is not None:
                self.use(self._probe)
            return
        if self._stale is not None:  # it still holds its lines or bus: let them go first
            stale, self._stale = self._stale, None
            if not self._closed(stale):
                return
        try:
            self.device = self._open()
        except Exception as err:
            self.problem = _describe(err)
            return
        log.warning("%s works again", self.part.value)
        self.problem = None
        self._post(PartHealth(self.part, working=True))
        if self._restored is not None:
            self.use(self._restored)

    def _lost(self, err: BaseException) -> None:
        device, self.device = self.device, None
        self.problem = _describe(err)
        log.warning("%s failed, the box goes on without it: %s", self.part.value, self.problem)
        if device is not None:
            self._closed(device)
        self._post(PartHealth(self.part, working=False))

    def _closed(self, device: T) -> bool:
        try:
            self._close(device)
        except Exception as err:
            log.debug("closing the failed %s: %s", self.part.value, _describe(err))
            self._stale = device
            return False
        return True

    def close(self) -> None:
        device, self.device = self.device, None
        for each in (device, self._stale):
            if each is not None:
                self._close(each)
        self._stale = None
