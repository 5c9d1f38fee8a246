"""What the receiver tests share: a fixed clock, two devices, a sealed message."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mynabox.payload.envelope import Kind
from mynabox_testkit.broker import DeliveryKit

NOW = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
TODAY = date(2026, 4, 1)
DEV = "ambulance-01"
OTHER = "ambulance-02"


def seal(kit: DeliveryKit, device: str = DEV, kind: Kind = Kind.SUMMARY, body=None) -> bytes:
    body = {"n": 1} if body is None else body
    return kit.sealer(device).seal(kind, body, now=NOW, clock_synced=True).token
