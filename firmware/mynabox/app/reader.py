"""The reader port: what the application layer needs of a card reader (`adapters.pcsc.PcscReader` is one).

The workers depend on this, not on the PC/SC adapter, so their bookkeeping is tested with a pure fake
reader as well as on pcscd; importing it loads no pyscard.
"""

from __future__ import annotations

from typing import Protocol


class PresentedCard(Protocol):
    """A connected card on a named reader (`PcscCard` is one): caps are remembered per reader name."""

    reader_name: str
    deadline: float | None  # time.monotonic(): every exchange ends by then (None: no limit)

    def transmit(self, command: bytes) -> bytes: ...

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
