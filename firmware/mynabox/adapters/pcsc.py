"""The PC/SC reader: waits for a card with SCardGetStatusChange and carries APDUs to it.

Built on pyscard's low-level `smartcard.scard` so that we own the context (to re-establish it when
pcscd restarts) and see every return code (to turn it into one of our typed errors). Nothing here
logs or raises card contents: only reader names, protocol codes and PC/SC error names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from smartcard import scard

from mynabox.card.errors import (
    CardRemoved,
    CardUnresponsive,
    ReaderGone,
    ReadTimeout,
    ServiceGone,
    TransportError,
)

log = logging.getLogger(__name__)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
# How long one SCardGetStatusChange may block: bounds how late a stop request is noticed when
# nobody calls cancel(), and how often a dead pcscd is retried (recovery well within 2 s).
WAIT_SLICE_S = 1.0
SERVICE_RETRY_S = 0.2
# Card connections whose exchange is still blocked after its deadline, process-wide: each holds a thread and
# a PC/SC context until pcscd answers. Past this many the reader is treated as stuck (a card pulled or a
# driver timeout frees them; without that only a restart would).
MAX_STUCK = 4


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


_REMOVED = {
    _code(c) for c in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_RESET_CARD)
}
_READER = {
    _code(c)
    for c in (
        scard.SCARD_E_READER_UNAVAILABLE,
        scard.SCARD_E_UNKNOWN_READER,
        scard.SCARD_E_NO_READERS_AVAILABLE,
    )
}
# The client library reports a broken socket to pcscd as SCARD_F_COMM_ERROR (measured: pcscd killed
# during SCardGetStatusChange), and an invalid handle after a restart means our context died with it.
_SERVICE = {
    _code(c)
    for c in (
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_E_INVALID_HANDLE,
        scard.SCARD_F_COMM_ERROR,
    )
}
_UNRESPONSIVE = {
    _code(c)
    for c in (
        scard.SCARD_W_UNRESPONSIVE_CARD,
        scard.SCARD_W_UNSUPPORTED_CARD,
        scard.SCARD_W_UNPOWERED_CARD,
        scard.SCARD_E_TIMEOUT,
        scard.SCARD_E_PROTO_MISMATCH,
        scard.SCARD_E_NOT_TRANSACTED,
        scard.SCARD_E_COMM_DATA_LOST,
        scard.SCARD_E_SHARING_VIOLATION,
    )
}
_BROKE_OFF = {_code(c) for c in (scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_E_COMM_DATA_LOST)}
_SUCCESS = _code(scard.SCARD_S_SUCCESS)
_TIMEOUT = _code(scard.SCARD_E_TIMEOUT)
_CANCELLED = _code(scard.SCARD_E_CANCELLED)


def error_name(hresult: int) -> str:
    """The PC/SC name of a return code, e.g. `SCARD_W_REMOVED_CARD` (for messages and logs)."""
    code = _code(hresult)
    for name in dir(scard):
        if name.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_")):
            value = getattr(scard, name)
            if isinstance(value, int) and _code(value) == code:
                return name
    return f"0x{code:08X}"


def translate(hresult: int, during: str) -> TransportError:
    """Our typed error for a failed PC/SC call (`during` names the operation, never data)."""
    code = _code(hresult)
    message = f"{during}: {error_name(code)}"
    if code in _REMOVED:
        return CardRemoved(message)
    if code in _READER:
        return ReaderGone(message)
    if code in _SERVICE:
        return ServiceGone(message)
    if code in _UNRESPONSIVE:
        return CardUnresponsive(message)
    # Anything else (internal errors, comm errors) leaves the card session unusable: treat it as
    # a card that stopped answering, which the caller handles as "try again".
    return CardUnresponsive(message)


class _PowerUpFailed(Exception):
    """SCardConnect found the card unpowered: a transient state, retried."""


class _Late(Exception):
    """The call did not return by its deadline; the line is abandoned."""


class _Line:
    """A PC/SC context for card connections, and the one thread that carries their SCardTransmit calls.

    SCardTransmit blocks until pcscd answers, and pcscd waits for the reader driver, which may not answer for
    long (vpcd has no APDU timeout; a real reader on a marginal card can take seconds). Nothing in
    pcsc-lite's client unblocks it (read in its winscard_clnt.c): SCardCancel only ends SCardGetStatusChange,
    and SCardDisconnect / SCardReleaseContext wait for the context mutex the blocked call holds, while
    holding the library's global lock, so every other PC/SC call of the process would hang behind them.
    So the caller waits for the line's thread at most until its deadline. A late call abandons the line:
    nobody touches its context again; when the call returns (card pulled, driver timeout, pcscd gone) the
    thread disconnects its handles, releases the context and ends. The waiting context is another one and
    never blocks behind it.
    """

    stuck = 0  # abandoned lines whose call has not returned, process-wide
    _stuck_lock = threading.Lock()

    def __init__(self, context: int) -> None:
        self.context = context
        self.abandoned = False
        self.closed = False
        self.handles: set[int] = set()
        self._lock = threading.Lock()  # orders "the call came back" against "the line is abandoned"
        self._busy = False  # a call is on the line's thread
        self._job: Callable[[], Any] | None = None
        self._result: Any = None
        self._ready = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._thread: threading.Thread | None = None

    def call(self, job: Callable[[], Any], deadline: float | None) -> Any:
        """`job()` on the line's thread; `_Late` (abandoning the line) if it is not back by `deadline`."""
        if deadline is None:
            return job()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="pcsc-line", daemon=True)
            self._thread.start()
        self._job, self._busy = job, True
        self._ready.release()
        if self._done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return self._result
        with self._lock:
            if self._done.acquire(blocking=False):  # it came back in between after all
                return self._result
            self._abandon()
        raise _Late

    def _abandon(self) -> None:
        """Under `_lock`, with a call in flight: from now on only the line's thread touches the context."""
        if not self.abandoned:
            self.abandoned = True
            with _Line._stuck_lock:
                _Line.stuck += 1

    def _serve(self) -> None:
        while True:
            self._ready.acquire()
            job, self._job = self._job, None
            if job is None:
                return
            try:
                self._result = job()
            except BaseException as err:  # handed to the caller as the result
                self._result = err
            with self._lock:
                self._busy = False
                self._done.release()
                if not self.abandoned:
                    continue
            self._clean_up()
            return

    def _clean_up(self) -> None:
        for handle in self.handles:
            scard.SCardDisconnect(handle, scard.SCARD_UNPOWER_CARD)
        scard.SCardReleaseContext(self.context)
        with _Line._stuck_lock:
            _Line.stuck -= 1
        log.info("an exchange abandoned at its deadline returned; its PC/SC context is released")

    def close(self) -> None:
        """Stop the thread and release the context. With a call still in flight (a stop while a read
        waits for its deadline) releasing would block on the call: the line is abandoned instead."""
        with self._lock:
            if self.abandoned or self.closed:
                return
            if self._busy:
                self._abandon()
                return
            self.closed = True
        if self._thread is not None:
            self._job = None
            self._ready.release()
        scard.SCardReleaseContext(self.context)


def stuck_exchanges() -> int:
    """Exchanges given up at their deadline that pcscd has not answered yet (each holds a thread)."""
    return _Line.stuck


class PcscCard:
    """A connected card: the `Transport` a session runs on. Close it (or use `with`) when done.

    `deadline` (time.monotonic()): every exchange ends by then; one that is not answered raises
    `ReadTimeout` and the connection is given up (see `_Line`). None: wait as long as pcscd does.
    """

    def __init__(self, name: str, handle: int, protocol: int, atr: bytes, line: _Line | None = None) -> None:
        self.reader_name = name
        self.atr = atr
        self.protocol = "T=1" if protocol == scard.SCARD_PROTOCOL_T1 else "T=0"
        self._handle: int | None = handle
        self._pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
        self._line = line
        self.apdu_count = 0
        self.deadline: float | None = None

    def transmit(self, command: bytes) -> bytes:
        handle = self._handle
        if handle is None:
            raise CardRemoved("transmit: card connection already closed")
        line, deadline = self._line, self.deadline
        if line is not None and line.closed:
            raise CardRemoved("transmit: the reader was closed")
        if line is not None and line.abandoned:
            raise ReadTimeout("transmit: the card stopped answering earlier in this read")

        def exchange() -> tuple[int, list[int]]:
            result: tuple[int, list[int]] = scard.SCardTransmit(handle, self._pci, list(command))
            return result

        try:
            result = exchange() if line is None else line.call(exchange, deadline)
        except _Late:
            self._handle = None  # the line's thread disconnects it once the call returns
            raise ReadTimeout("transmit: no answer from the card by the read's deadline") from None
        if isinstance(result, BaseException):
            raise result
        hresult, response = result
        code = _code(hresult)
        if code in _BROKE_OFF:
            # The exchange broke off mid-APDU: on a contactless reader that is the card leaving the
            # field before pcscd has noticed its absence. The crew's action is the same: hold it again.
            raise CardRemoved(f"transmit: {error_name(code)} (exchange broke off)")
        if code != _SUCCESS:
            raise translate(hresult, "transmit")
        self.apdu_count += 1
        if len(response) < 2:
            # No status word at all: vpcd reports a card that vanished mid-APDU this way (measured).
            raise CardRemoved("transmit: response without status word (card left mid-exchange)")
        return bytes(response)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None or (self._line is not None and (self._line.abandoned or self._line.closed)):
            return
        if self._line is not None:
            self._line.handles.discard(handle)
        # The card may already be gone; ending the transaction or disconnecting then fails harmlessly.
        # Unpower rather than leave it: with LEAVE_CARD, pcscd's later grace-period power-down raced
        # with a waiting client so that a re-presented card went unnoticed (measured with vpcd).
        scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)
        scard.SCardDisconnect(handle, scard.SCARD_UNPOWER_CARD)

    def __enter__(self) -> PcscCard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class _Slot:
    """What we last saw of one reader: its state word (with pcsc-lite's event counter)."""

    state: int = scard.SCARD_STATE_UNAWARE
    # The event counter value of the insertion we already handed out (None: not handed out).
    handed_out: int | None = None


class PcscReader:
    """Waits for cards on PC/SC readers and connects to them.

    `reader_filter`: only readers whose name contains it (None: every reader). The reader keeps one
    PC/SC context and re-establishes it whenever pcscd went away, so a daemon restart needs no restart
    of ours. A card is handed out once per insertion: after a read, the same card on the reader is not
    read again until it is taken away and presented anew. Cards are connected on a second context (a
    `_Line`), so an exchange that never returns cannot block the waiting.
    """

    def __init__(self, reader_filter: str | None = None) -> None:
        self.reader_filter = reader_filter
        self._context: int | None = None
        self._line: _Line | None = None
        self._slots: dict[str, _Slot] = {}
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    # -- context ------------------------------------------------------------------------------

    def _ensure_context(self) -> int:
        with self._lock:
            if self._context is not None:
                return self._context
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if _code(hresult) != _SUCCESS:
                raise translate(hresult, "establish context")
            self._context = int(context)
            self._slots.clear()
            self._pnp_state = scard.SCARD_STATE_UNAWARE
            log.info("PC/SC context established")
            return self._context

    def _drop_context(self) -> None:
        with self._lock:
            context, self._context = self._context, None
            line, self._line = self._line, None
        if context is not None:
            scard.SCardReleaseContext(context)
        if line is not None:
            line.close()

    def _card_line(self) -> _Line:
        """The context cards are connected on; a new one once the last was abandoned."""
        with self._lock:
            if self._line is not None and not (self._line.abandoned or self._line.closed):
                return self._line
            if _Line.stuck >= MAX_STUCK:
                raise CardUnresponsive(f"{_Line.stuck} card exchanges still unanswered: take the card away")
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if _code(hresult) != _SUCCESS:
                raise translate(hresult, "establish context")
            self._line = _Line(int(context))
            return self._line

    def close(self) -> None:
        self._drop_context()

    def cancel(self) -> None:
        """Wake a `wait_for_card` blocked in another thread; it returns None promptly.

        Sticky: later waits return None at once until `resume()`, so a shutdown request that lands
        between two waits is not lost.
        """
        self._cancelled.set()
        with self._lock:
            context = self._context
        if context is not None:
            scard.SCardCancel(context)

    def resume(self) -> None:
        """Undo `cancel()`."""
        self._cancelled.clear()

    def readers(self) -> list[str]:
        """The matching readers pcscd knows now (empty when none)."""
        context = self._ensure_context()
        hresult, names = scard.SCardListReaders(context, [])
        code = _code(hresult)
        if code == _code(scard.SCARD_E_NO_READERS_AVAILABLE):
            return []
        if code != _SUCCESS:
            if code in _SERVICE:
                self._drop_context()
            raise translate(hresult, "list readers")
        return [n for n in names if self.reader_filter is None or self.reader_filter in n]

    # -- waiting ------------------------------------------------------------------------------

    def wait_for_card(self, timeout: float | None = None) -> PcscCard | None:
        """Block until a card is presented and connect to it.

        Returns None when `timeout` seconds pass with no new card or when `cancel()` is called.
        If at the end of the timeout pcscd was unreachable or no matching reader existed, raises
        `ServiceGone` / `ReaderGone` instead, so the caller can say which. Raises `CardUnresponsive`
        for a card that is present but mute (once per insertion). Meanwhile, lost services and
        readers are waited out and recovered.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        problem: TransportError | None = None
        while not self._cancelled.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if problem is not None:
                    raise problem
                return None
            slice_s = WAIT_SLICE_S if remaining is None else min(WAIT_SLICE_S, remaining)
            try:
                card = self._wait_once(slice_s)
            except (ServiceGone, ReaderGone) as exc:
                problem = exc
                if isinstance(exc, ServiceGone):
                    self._drop_context()
                    self._sleep(min(SERVICE_RETRY_S, slice_s))
                continue
            problem = None
            if card is not None:
                return card
        return None

    def _sleep(self, seconds: float) -> None:
        self._cancelled.wait(seconds)

    def _wait_once(self, slice_s: float) -> PcscCard | None:
        """One round: connect to a waiting card, or block in SCardGetStatusChange for one slice."""
        context = self._ensure_context()
        names = self.readers()
        for gone in set(self._slots) - set(names):
            del self._slots[gone]
        for name in names:
            self._slots.setdefault(name, _Slot())
        card = self._connect_any()
        if card is not None:
            return card
        watch: list[tuple[str, int]] = [(n, self._slots[n].state) for n in names]
        watch.append((PNP_NOTIFICATION, self._pnp_state))
        hresult, states = scard.SCardGetStatusChange(context, int(slice_s * 1000), watch)
        code = _code(hresult)
        if code in (_TIMEOUT, _CANCELLED):
            if not names:
                raise ReaderGone("no matching reader")
            return None
        if code in _READER:
            # A reader left while we watched it; the next round lists the readers again.
            self._slots.clear()
            return None
        if code != _SUCCESS:
            raise translate(hresult, "wait for card")
        self._record(states)
        if not names:
            raise ReaderGone("no matching reader")
        return self._connect_any()

    def _record(self, states: list[tuple[str, int, Any]]) -> None:
        for name, event_state, _atr in states:
            new_state = event_state & ~scard.SCARD_STATE_CHANGED
            if name == PNP_NOTIFICATION:
                self._pnp_state = new_state
                continue
            slot = self._slots.get(name)
            if slot is None:
                continue
            if new_state != slot.state:
                log.debug("%s: state 0x%X -> 0x%X", name, slot.state, new_state)
            slot.state = new_state
            if not new_state & scard.SCARD_STATE_PRESENT:
                slot.handed_out = None

    def _connect_any(self) -> PcscCard | None:
        for name, slot in self._slots.items():
            if not slot.state & scard.SCARD_STATE_PRESENT:
                continue
            counter = slot.state >> 16
            if slot.handed_out == counter:
                continue
            slot.handed_out = counter
            try:
                return self._connect(name)
            except _PowerUpFailed:
                # pcscd's view of the slot lags behind the card (measured with vpcd after a quick
                # re-tap): try this insertion again next round rather than giving up on it.
                slot.handed_out = None
                self._sleep(SERVICE_RETRY_S)
        return None

    def _connect(self, name: str) -> PcscCard | None:
        protocols = scard.SCARD_PROTOCOL_T1 | scard.SCARD_PROTOCOL_T0
        line = self._card_line()
        hresult, handle, protocol = scard.SCardConnect(
            line.context, name, scard.SCARD_SHARE_SHARED, protocols
        )
        code = _code(hresult)
        log.debug("connect %s: %s", name, error_name(code) if code else "ok")
        if code in _REMOVED:
            # The card brushed past and left before we connected: keep waiting for the next one.
            log.info("card left %s before connect", name)
            return None
        if code == _code(scard.SCARD_W_UNPOWERED_CARD):
            raise _PowerUpFailed
        if code != _SUCCESS:
            raise translate(hresult, "connect")
        # A transaction keeps other PC/SC clients from interleaving with our SELECT/READ sequence.
        hresult = scard.SCardBeginTransaction(handle)
        if _code(hresult) != _SUCCESS:
            scard.SCardDisconnect(handle, scard.SCARD_UNPOWER_CARD)
            if _code(hresult) in _REMOVED:
                return None
            raise translate(hresult, "begin transaction")
        hresult, _reader, _state, _proto, atr = scard.SCardStatus(handle)
        atr_bytes = bytes(atr) if _code(hresult) == _SUCCESS else b""
        log.info("card on %s (%s)", name, "T=1" if protocol == scard.SCARD_PROTOCOL_T1 else "T=0")
        line.handles.add(handle)
        return PcscCard(name, handle, protocol, atr_bytes, line)

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
