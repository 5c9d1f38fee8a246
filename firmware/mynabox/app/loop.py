"""The decision loop: the one thread that makes every decision of the box.

Adapters and workers post events into one queue; the controller turns each event into effects; the loop
hands them to `apply` (the composition root's, which knows the concrete parts). Between events the loop keeps
two timers: the systemd watchdog ping, sent from here only so a hung loop gets the box restarted, and the
housekeeping (clock sync, outbox depth, the hourly purge, every RETRY_S the parts the box can do without
— display, buttons, LED, buzzer — opened again if they failed, probed if they work, and an installed update
waiting for the switch). A worker stuck in one read or one delivery stops the pings too: the loop is fine
then, but the crew would watch 読取中 or 照会中 forever.

Time comes in through `monotonic` and `now`, so a test drives the timers with a fake clock through `step`.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from mynabox.app.ports import NotifierPort
from mynabox.core.effects import Effect, ShowScreen, Stop
from mynabox.core.events import (
    ClockSync,
    ConsentPressed,
    Event,
    LookupDone,
    QueueDepth,
    ShutdownRequested,
    Tick,
    UpdatePending,
)
from mynabox.core.machine import Controller
from mynabox.record import record
from mynabox.vocab import Part

log = logging.getLogger(__name__)

TICK_S = 1.0  # the loop wakes at least this often (watchdog, housekeeping); sooner for a state's deadline
HOUSEKEEPING_S = 1.0
PURGE_EVERY_S = 3600.0
RETRY_S = 5.0  # a reconnected OLED or panel is back within this; a failed open costs < 1 ms
UPDATE_POLL_S = 5.0  # how often the boot state is looked at for an installed update (two 512-byte reads)


class ClockWatch:
    """Whether the system clock is synced, as the loop's housekeeping last saw it. The workers read this
    (a call per read) instead of asking the system themselves; only the loop polls the probe."""

    def __init__(self, probe: Callable[[], bool]) -> None:
        self._probe = probe
        self.synced = probe()

    def __call__(self) -> bool:
        return self.synced

    def poll(self) -> bool:
        """Ask the probe again; True when the answer changed."""
        synced = self._probe()
        changed, self.synced = synced != self.synced, synced
        return changed


@record
class Watched:
    """A worker whose one job must end within `limit_s` (its `busy_s(now)`: how long the job has run)."""

    what: str
    busy_s: Callable[[float], float]
    limit_s: float


class Loop:
    def __init__(
        self,
        controller: Controller,
        events: queue.Queue[Event],
        *,
        apply: Callable[[Effect, float | None], None],
        notifier: NotifierPort,
        clock: ClockWatch,
        depth: Callable[[], int],
        purge: Callable[[], None],
        watched: Sequence[Watched] = (),
        result_shown: Callable[[], None] = lambda: None,
        retry: Callable[[], None] = lambda: None,
        failed: Callable[[], tuple[Part, ...]] = lambda: (),
        update_pending: Callable[[], bool] = lambda: False,
        idle: Callable[[], object] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.controller = controller
        self.events = events
        self._apply = apply  # (effect, when the consent button was pressed, if this event is that press)
        self._notifier = notifier
        self._clock = clock
        self._depth = depth
        self._purge = purge
        self._watched = tuple(watched)
        self._result_shown = result_shown
        self._retry = retry  # the kept parts: open the failed ones again, probe the others
        self._failed = failed  # the kept parts that do not work now
        self._update_pending = update_pending
        self._idle = idle  # the C heap's free pages back to the kernel, when no worker has a job
        self._idle_due = False  # once after start-up and once after each read
        self._last_update_poll: float | None = None
        self._update_posted = False
        self._update_wait_kind: list[str] | None = None
        self._monotonic = monotonic
        self._now = now
        self._interval = notifier.watchdog_interval()
        self._last_ping = self._last_house = monotonic()
        self._last_purge = 0.0
        self._last_retry = self._last_ping
        self._queued = -1
        self._hung_logged = False

    def run(self, ready_status: str, on_ready: Callable[[], None] = lambda: None) -> int:
        """Show the first screen, tell systemd READY, then decide until Stop. Returns the exit code."""
        start = self.controller.start(
            clock_synced=self._clock.synced, queued=self._depth(), failed=self._failed()
        )
        self.apply_all(start, None)
        self._notifier.ready(ready_status)
        on_ready()
        self._idle_due = True  # what start-up allocated only for itself (keys, config, first connections)
        while not self.step(self.next_event()):
            pass
        return 0

    def next_event(self) -> Event:
        """The next posted event, or a Tick after TICK_S or at the current state's deadline if sooner."""
        wait = TICK_S
        deadline = self.controller.deadline
        if deadline is not None:
            wait = min(wait, max(0.01, (deadline - self._now()).total_seconds()))
        try:
            return self.events.get(timeout=wait)
        except queue.Empty:
            return Tick()

    def step(self, event: Event) -> bool:
        """Decide on one event, apply its effects, then run the timers that are due. True on Stop."""
        consent_at = self._monotonic() if isinstance(event, ConsentPressed) else None
        if isinstance(event, ShutdownRequested):
            # the last retained state must count what is really left (housekeeping runs once a second)
            self.apply_all(self.controller.handle(QueueDepth(self._depth()), self._now()), None)
        if isinstance(event, LookupDone | QueueDepth):
            # The controller now counts what the event says: housekeeping must compare against that, or a
            # depth that went 0 -> 2 -> 0 between two looks would leave the status (and the switch) at 2.
            self._queued = event.queued
        effects = self.controller.handle(event, self._now())
        if self.apply_all(effects, consent_at):
            return True
        if isinstance(event, LookupDone) and any(isinstance(e, ShowScreen) for e in effects):
            self._result_shown()
        now = self._monotonic()
        self._idle_due |= isinstance(event, LookupDone)
        if self._idle_due and all(w.busy_s(now) == 0 for w in self._watched):
            self._idle_due = False
            try:
                self._idle()
            except Exception:  # memory housekeeping only: it must never stop the decisions
                log.exception("the idle hook failed")
        hung = self._hung(now)
        if self._interval is not None and now - self._last_ping >= self._interval and not hung:
            self._notifier.watchdog()
            self._last_ping = now
        if now - self._last_house >= HOUSEKEEPING_S:
            self._last_house = now
            purge = now - self._last_purge >= PURGE_EVERY_S
            if purge:
                self._last_purge = now
            self._housekeeping(purge)
        return False

    def apply_all(self, effects: list[Effect], consent_at: float | None) -> bool:
        """Apply effects in order; True when one of them was Stop."""
        for effect in effects:
            if isinstance(effect, Stop):
                return True
            try:
                self._apply(effect, consent_at)
            except Exception:  # a failing display or buzzer must not stop the decisions
                log.exception("applying %s failed", type(effect).__name__)
        return False

    def _hung(self, now: float) -> bool:
        """A worker stuck in one job: no pings, so systemd's watchdog restarts the box."""
        stuck = [(w.what, busy) for w in self._watched if (busy := w.busy_s(now)) > w.limit_s]
        if stuck and not self._hung_logged:
            what, busy = stuck[0]
            log.error("%s under way for %.0f s: no watchdog pings, systemd restarts the box", what, busy)
            self._notifier.status(f"hung: {what}")
        elif not stuck and self._hung_logged:
            log.warning("the hung worker recovered: watchdog pings resume")
        self._hung_logged = bool(stuck)
        return bool(stuck)

    def _housekeeping(self, purge: bool) -> None:
        now = self._monotonic()
        if now - self._last_retry >= RETRY_S:
            self._last_retry = now
            try:
                self._retry()
            except Exception:  # the parts catch their own failures; this is the last guard
                log.exception("retrying the parts failed")
        if self._clock.poll():
            self.events.put(ClockSync(self._clock.synced))
        if purge:
            self._purge()
        depth = self._depth()
        if depth != self._queued:
            self.events.put(QueueDepth(depth))
        self._queued = depth
        self._poll_update()

    def _poll_update(self) -> None:
        """Every UPDATE_POLL_S: tell the controller once that an installed update waits; then say why the
        switch waits whenever that changes."""
        now = self._monotonic()
        if self._last_update_poll is not None and now - self._last_update_poll < UPDATE_POLL_S:
            return
        self._last_update_poll = now
        if not self._update_posted:
            if self._update_pending():
                log.info("update: an installed update waits for the box to be idle")
                self._update_posted = True  # the controller decides when; once told, it remembers
                self.events.put(UpdatePending())
            return
        waits = self.controller.update_waits(self._now())
        kind = None if waits is None else waits.split(" ", 2)[:2]  # logged when the kind of wait changes
        if kind != self._update_wait_kind and waits is not None:
            log.info("update: the switch waits: %s", waits)
        self._update_wait_kind = kind
