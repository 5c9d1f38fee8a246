"""The records of reads between the card and the delivery: the one place a certificate waits in memory.

One `Holding` is made by the composition root and shared: the card worker `keep`s each read's record, the
delivery worker `take`s it (once) for the delivery the loop started, and the loop's `ForgetPatient` drops
every read up to a number. Whichever comes first wins, under one lock: a record taken is gone, a record
forgotten cannot be taken, so a patient is forgotten once and never delivered after that.
"""

from __future__ import annotations

import threading

from mynabox.app.cardread import ReadRecord

MAX_HELD = 4  # records held at once; the loop forgets each within a screen timeout


class Holding:
    def __init__(self, max_held: int = MAX_HELD) -> None:
        self._max = max_held
        self._lock = threading.Lock()
        self._records: dict[int, ReadRecord] = {}  # by read number, until delivered or forgotten

    def keep(self, read: int, record: ReadRecord) -> None:
        """Hold the record of read number `read` until it is taken or forgotten."""
        with self._lock:
            self._records[read] = record
            while len(self._records) > self._max:  # only if the loop stopped deciding: keep the newest
                del self._records[min(self._records)]

    def take(self, read: int, card_hash: str) -> ReadRecord | None:
        """Hand the read's record to a delivery (once); None when it was forgotten or is another card's."""
        with self._lock:
            record = self._records.pop(read, None)
        return record if record is not None and record.card_hash == card_hash else None

    def forget(self, upto: int) -> None:
        """Drop the reads numbered up to `upto`; newer ones belong to taps the loop has not handled yet."""
        with self._lock:
            for read in [r for r in self._records if r <= upto]:
                del self._records[read]

    @property
    def held(self) -> int:
        """Reads whose certificate is still in memory (waiting for delivery, or not yet forgotten)."""
        with self._lock:
            return len(self._records)
