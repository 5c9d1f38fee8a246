"""The daemon's two workers: the card worker (PC/SC) and the delivery worker (lookup, seal, queue).

Both only post events into the decision loop's queue; neither decides anything. The card worker is the
one place a certificate is read; it keeps the read's record in the `Holding` it shares with the delivery
worker and the loop, until the loop starts a delivery (the delivery worker takes it) or forgets the patient.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from mynabox.app.cardread import READ_LIMIT_S, CapsMemory, read_card
from mynabox.app.delivery import Delivery
from mynabox.app.holding import Holding
from mynabox.app.ports import PresentedCard, Reader
from mynabox.app.readtiming import ReadTiming, ReadTimings
from mynabox.card.certcheck import TrustStore
from mynabox.card.errors import (
    CardError,
    CardUnresponsive,
    ReaderGone,
    ServiceGone,
    TransportError,
    read_failure,
)
from mynabox.card.jpki import ReaderCaps
from mynabox.core.effects import RecordOutcome, StartDelivery
from mynabox.core.events import (
    CardPresent,
    CardRead,
    CardReadFailed,
    Event,
    LookupDone,
    LookupOutcome,
    ReaderMissing,
    ReaderPresent,
)
from mynabox.record import record
from mynabox.vocab import Outcome, ReadFailure

log = logging.getLogger(__name__)

WAIT_S = 2.0  # one wait for a card; stop() cancels it at once, so this only bounds idle wake-ups
_LOOKUP_OUTCOMES = {
    Outcome.DELIVERED_SUMMARY: LookupOutcome.FOUND,
    Outcome.NOT_REGISTERED: LookupOutcome.NOT_REGISTERED,
    Outcome.CARD_RECORD: LookupOutcome.UNAVAILABLE,
}


class Stopwatch:
    """`with watch as started:` times one piece of work; `running_s` says how long the current one has run."""

    def __init__(self) -> None:
        self._since: float | None = None

    def __enter__(self) -> float:
        self._since = time.monotonic()
        return self._since

    def __exit__(self, *exc: object) -> None:
        self._since = None

    def running_s(self, now: float) -> float:
        since = self._since
        return 0.0 if since is None else now - since


class CardWorker:
    def __init__(
        self,
        reader: Reader,
        post: Callable[[Event], None],
        holding: Holding,
        *,
        trust: TrustStore,
        hash_key: bytes,
        clock_synced: Callable[[], bool],
        extended: bool | None = None,
        read_limit_s: float = READ_LIMIT_S,
    ) -> None:
        self._reader = reader
        self._limit_s = read_limit_s
        self._post = post
        self._trust = trust
        self._key = hash_key
        self._synced = clock_synced
        self._caps = CapsMemory(ReaderCaps(extended=extended))
        self._present: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="card-worker", daemon=True)
        self._holding = holding  # shared with the delivery worker (take) and the loop (forget)
        self._reads = 0
        self._busy = Stopwatch()  # the read under way

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._reader.cancel()
        self._thread.join(timeout=3.0)
        self._reader.close()

    @property
    def reads(self) -> int:
        """Reads started since the process began (each one's CardPresent carries its number)."""
        return self._reads

    def busy_s(self, now: float) -> float:
        """How long the read under way has taken so far (0 when none is): a hung reader never ends one."""
        return self._busy.running_s(now)

    def _next_read(self) -> int:
        self._reads += 1
        return self._reads

    def _reader_state(self, present: bool) -> None:
        if present != self._present:
            self._present = present
            self._post(ReaderPresent() if present else ReaderMissing())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                card = self._reader.wait_for_card(timeout=WAIT_S)
            except (ReaderGone, ServiceGone) as err:
                log.info("no reader: %s", err)
                self._reader_state(False)
                continue
            except CardUnresponsive as err:
                self._reader_state(True)
                self._post(CardPresent(self._next_read()))
                self._post(CardReadFailed(read_failure(err)))
                continue
            except TransportError as err:
                log.warning("reader error: %s", err)
                continue
            self._reader_state(True)
            if card is not None:
                with self._busy as present_at:
                    self._read(card, present_at)

    def _read(self, card: PresentedCard, present_at: float) -> None:
        read = self._next_read()
        self._post(CardPresent(read))
        # A card that answers its ATR and then nothing must not hold the worker: the read ends by then.
        card.deadline = present_at + self._limit_s
        failure: ReadFailure | None = None
        try:
            record = read_card(
                card, self._caps, trust=self._trust, hash_key=self._key, clock_synced=self._synced()
            )
        except CardError as err:
            failure = read_failure(err)
            if said := _FAILURE_LOG.get(failure):  # messages carry no card contents (mynabox.card.errors)
                log.log(said[0], "%s: %s", said[1], err)
        finally:
            card.close()
        if failure is not None:
            self._post(CardReadFailed(failure))
            return
        log.info(
            "card read: %d APDUs, %.0f ms, chain %s, %s",
            record.jpki.apdus,
            record.ms,
            record.check.status.value,
            record.jpki.caps,
        )
        self._holding.keep(read, replace(record, present_at=present_at, read_done_at=time.monotonic()))
        self._post(CardRead(read, record.card_hash))


# How a failed read is logged (a card pulled too soon is the crew's everyday: not at all).
_FAILURE_LOG = {
    ReadFailure.NOT_MY_NUMBER_CARD: (logging.INFO, "not a My Number Card"),
    ReadFailure.UNRESPONSIVE: (logging.WARNING, "card unresponsive"),
    ReadFailure.MALFORMED: (logging.WARNING, "card answered unexpectedly"),
    ReadFailure.READER_ERROR: (logging.WARNING, "reader failed during the read"),
}


@record
class Purge:
    retention_s: float


@record
class _Timed:
    job: StartDelivery
    consent_at: float | None


Job = _Timed | RecordOutcome | Purge


class DeliveryWorker:
    """Runs deliveries and audit writes one at a time, off the decision loop."""

    def __init__(
        self,
        delivery: Delivery,
        holding: Holding,
        post: Callable[[Event], None],
        timings: ReadTimings | None = None,
    ) -> None:
        self._delivery = delivery
        self._holding = holding  # shared with the card worker (keep) and the loop (forget)
        self._post = post
        self._timings = timings or ReadTimings()
        self._busy = Stopwatch()  # the job under way
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="delivery-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: StartDelivery | RecordOutcome, *, consent_at: float | None = None) -> None:
        """`consent_at`: monotonic time of the crew's press that started this delivery (None: no wait)."""
        self._jobs.put(_Timed(job, consent_at) if isinstance(job, StartDelivery) else job)

    def submit_purge(self, retention_s: float) -> None:
        self._jobs.put(Purge(retention_s))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10.0)

    def busy_s(self, now: float) -> float:
        """How long the job under way has taken so far (0 when idle)."""
        return self._busy.running_s(now)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._busy:
                self._run(job)

    def _run(self, job: Job) -> None:
        try:
            if isinstance(job, RecordOutcome):
                self._delivery.record(job.outcome, job.consent, job.card_hash)
            elif isinstance(job, Purge):
                if purged := self._delivery.purge(job.retention_s):
                    log.warning("purged %d undelivered messages past retention", purged)
            else:
                self._deliver(job.job, job.consent_at)
        except Exception:  # one bad job must not stop the box; the log says which
            log.exception("delivery worker: %s failed", type(job).__name__)
            if isinstance(job, _Timed):
                self._post(LookupDone(LookupOutcome.UNAVAILABLE, (), queued=0))

    def _deliver(self, job: StartDelivery, consent_at: float | None) -> None:
        record = self._holding.take(job.read, job.card_hash)
        if record is None:  # forgotten in between (cleared): nothing to send
            self._post(LookupDone(LookupOutcome.UNAVAILABLE, (), queued=0))
            return
        result = self._delivery.deliver(record, job.consent)
        waited = 0.0 if consent_at is None else max(0.0, consent_at - record.read_done_at) * 1000
        timing = ReadTiming(record.present_at, record.ms, result.lookup_ms, waited)
        self._timings.queued(result.message_id, timing)
        self._post(LookupDone(_LOOKUP_OUTCOMES[result.outcome], result.flags, result.queued))
