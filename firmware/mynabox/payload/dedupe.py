"""Bounded memory of message ids a receiver has seen, to drop the duplicates at-least-once delivery makes.

A duplicate is normal (the outbox resends whatever lacked a PUBACK), so it is reported, not raised.
The memory is bounded by count and by age; an id older than either bound is forgotten, which is why the
opener also refuses messages older than ``max_age`` (when the sender's clock was synced). Choose ``max_age``
here at least as long as the opener's, and ``max_count`` above the traffic of that period.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from datetime import datetime, timedelta

from mynabox.payload.envelope import require_aware


class Seen(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"


class SeenIds:
    """LRU of message ids by first sighting; ``check`` records the id and says whether it was new."""

    def __init__(self, *, max_count: int, max_age: timedelta) -> None:
        if max_count <= 0 or max_age <= timedelta(0):
            raise ValueError("max_count and max_age must be positive")
        self._max_count = max_count
        self._max_age = max_age
        self._ids: OrderedDict[str, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __repr__(self) -> str:
        return f"SeenIds({len(self._ids)}/{self._max_count}, max_age={self._max_age})"

    def check(self, message_id: str, *, now: datetime) -> Seen:
        now = require_aware(now)
        self._expire(now)
        if message_id in self._ids:
            return Seen.DUPLICATE
        self._ids[message_id] = now
        while len(self._ids) > self._max_count:
            self._ids.popitem(last=False)
        return Seen.NEW

    def _expire(self, now: datetime) -> None:
        # Insertion order is sighting order, so the oldest are at the front.
        while self._ids:
            oldest, seen_at = next(iter(self._ids.items()))
            if now - seen_at <= self._max_age:
                return
            del self._ids[oldest]
