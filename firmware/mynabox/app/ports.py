"""The ports the application layer needs of the outbox, the audit log and the service manager.

The delivery and the loop depend on these, not on the adapters (`adapters.outbox.Outbox`,
`adapters.audit.AuditLog`, `adapters.systemd.Notifier` are one each): the layers contract in pyproject.toml
keeps `app` from importing `adapters`, as the reader port (`app.reader`) already did for PC/SC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from mynabox.payload.audit import AuditRecord, ChainedAudit
from mynabox.payload.seal import Sealed


class OutboxPort(Protocol):
    def put_sealed(self, topic: str, seal: Callable[[int], Sealed], *, now: datetime) -> Sealed:
        """Seal with the next sequence number (``seal(seq)``) and queue it, in one transaction."""
        ...

    def depth(self) -> int: ...

    def purge(self, older_than: timedelta, now: datetime) -> list[str]:
        """Delete messages queued before ``now - older_than``; returns their ids (one audit record each)."""
        ...


class AuditPort(Protocol):
    def append(self, record: AuditRecord) -> ChainedAudit:
        """Chain the record to the log's head and write it durably."""
        ...


class NotifierPort(Protocol):
    def watchdog_interval(self) -> float | None:
        """How often to ping the watchdog (None: no watchdog)."""
        ...

    def ready(self, status: str | None = None) -> bool: ...

    def status(self, text: str) -> bool: ...

    def watchdog(self) -> bool: ...
