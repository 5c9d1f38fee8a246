"""The ports the application layer needs of the card reader, the outbox, the audit log and systemd.

The workers, the delivery and the loop depend on these, not on the adapters (`adapters.pcsc.PcscReader`,
`adapters.outbox.Outbox`, `adapters.audit.AuditLog`, `adapters.systemd.Notifier` are one each): the layers
contract in pyproject.toml keeps `app` from importing `adapters`, so the workers' bookkeeping is tested with a
pure fake reader as well as on pcscd, and importing this loads no pyscard.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from mynabox.card.transport import Transport
from mynabox.payload.audit import AuditRecord, ChainedAudit
from mynabox.payload.seal import Sealed


class PresentedCard(Transport, Protocol):
    """A connected card on a named reader (`PcscCard` is one): the card layer's one `Transport`, plus what
    the app needs around it. Caps are remembered per reader name."""

    reader_name: str
    deadline: float | None  # time.monotonic(): every exchange ends by then (None: no limit)

    def close(self) -> None: ...


class Reader(Protocol):
    def wait_for_card(self, timeout: float | None = None) -> PresentedCard | None:
        """The next card presented within `timeout`, connected; None on timeout or cancel. Raises the card
        path's errors (`ReaderGone`, `ServiceGone`, `CardUnresponsive`, other `TransportError`s)."""
        ...

    def cancel(self) -> None:
        """End a wait under way at once (from another thread)."""
        ...

    def close(self) -> None: ...


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
