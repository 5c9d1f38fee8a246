"""Where a read's time goes: card present → result on the OLED → PUBACK, split into card I/O, the lookup,
the crew's consent wait and what is left, the box's own overhead (loop, sealing, fsyncs, MQTT).

One log line per milestone, durations only (no personal data, no card hash), in key=value form so fleet ops
can grep the journal and `tests/bench/bench_daemon.py` can parse it:

    read result-shown present_to_result_ms=… card_ms=… lookup_ms=… consent_wait_ms=…
    read delivered present_to_puback_ms=… card_ms=… lookup_ms=… consent_wait_ms=… overhead_ms=…

Monotonic seconds throughout (wall-clock steps must not bend a duration).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from mynabox.record import record

log = logging.getLogger(__name__)

MAX_PENDING = 64  # messages queued while offline are timed too; bound what waits for its PUBACK
_V = TypeVar("_V")


@record
class ReadTiming:
    present_at: float  # monotonic: the card worker saw the card
    card_ms: float  # the APDU exchange
    lookup_ms: float  # the summary service round trip
    consent_wait_ms: float  # waiting for the crew's 同意/緊急 after the read (0 with a default consent)


def overhead_ms(timing: ReadTiming, puback_at: float) -> float:
    """Card present → PUBACK minus what is not ours to speed up (card I/O, lookup, the crew)."""
    total = (puback_at - timing.present_at) * 1000
    return total - timing.card_ms - timing.lookup_ms - timing.consent_wait_ms


def _line(milestone: str, total_key: str, timing: ReadTiming, now: float, extra: dict[str, float]) -> str:
    values = {
        total_key: (now - timing.present_at) * 1000,
        "card_ms": timing.card_ms,
        "lookup_ms": timing.lookup_ms,
        "consent_wait_ms": timing.consent_wait_ms,
        **extra,
    }
    return f"read {milestone} " + " ".join(f"{k}={v:.1f}" for k, v in values.items())


class ReadTimings:
    """Timings of reads between their delivery being queued and their PUBACK (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, ReadTiming] = OrderedDict()
        self._early: OrderedDict[str, float] = OrderedDict()  # PUBACKs that came before `queued`
        self._last: ReadTiming | None = None

    def queued(self, message_id: str, timing: ReadTiming) -> None:
        with self._lock:
            self._last = timing
            acked_at = self._early.pop(message_id, None)
            if acked_at is None:
                _put(self._pending, message_id, timing)
        if acked_at is not None:  # the PUBACK beat the worker back from queueing it
            self._log_delivered(timing, acked_at)

    def result_shown(self) -> None:
        """The loop has drawn the result of the last queued read."""
        with self._lock:
            timing, self._last = self._last, None
        if timing is not None:
            log.info("%s", _line("result-shown", "present_to_result_ms", timing, self._clock(), {}))

    def acked(self, message_id: str) -> None:
        now = self._clock()
        with self._lock:
            timing = self._pending.pop(message_id, None)
            if timing is None:  # not queued yet (or not a read: audit, state): keep the time a while
                _put(self._early, message_id, now)
        if timing is not None:
            self._log_delivered(timing, now)

    def _log_delivered(self, timing: ReadTiming, acked_at: float) -> None:
        extra = {"overhead_ms": overhead_ms(timing, acked_at)}
        log.info("%s", _line("delivered", "present_to_puback_ms", timing, acked_at, extra))


def _put(bounded: OrderedDict[str, _V], key: str, value: _V) -> None:
    bounded[key] = value
    while len(bounded) > MAX_PENDING:
        bounded.popitem(last=False)


def parse(line: str) -> tuple[str, dict[str, float]] | None:
    """(milestone, figures) from a log line written above (any prefix), None for any other line."""
    found = _LINE.search(line)
    if found is None:
        return None
    return found[1], {key: float(value) for key, value in _PAIR.findall(found[2])}


_LINE = re.compile(r"\bread (result-shown|delivered) ((?:\w+=-?[\d.]+ ?)+)$")
_PAIR = re.compile(r"(\w+)=(-?[\d.]+)")
