"""The box as a state machine: events in, effects out, `now` passed in. No I/O, no clock, no threads.

The transitions are a table, `TRANSITIONS[(state, event type)] -> handler` (h11's `_state.py` idea).

Rule 1: condition events (reader present/missing, broker online/offline, clock sync, queue depth, a part
        failed or back) are accepted in every state: they update the status line and redraw.
Rule 2: Tick is accepted in every state; it fires the deadline of the current state, if any.
Rule 3: ShutdownRequested is accepted in every state: stopped screen, LED off, Stop.
Rule 4: any other (state, event) pair not in the table is ignored and returns no effects — e.g. a
        consent press while a result is shown. The crew cannot drive the box into an illegal state by
        pressing or tapping at the wrong time. A card tapped while a lookup runs is not used either, but
        every read leaves an audit record: `busy`, or the failure (e.g. `card-removed`).
Rule 5: UpdatePending is accepted in every state; the reboot into the new slot (RebootForUpdate, once)
        is decided only in IDLE, on a Tick or a condition event, when mynabox.update.policy says the box
        is idle: no read for `update_idle_s` and the outbox empty. Never while reading, at the consent
        prompt, looking up, or while a result or a notice is shown.

A consent press made before the tap waits for it (consent_window_s), shown on the ready screen so the
crew sees what the next read will record; both buttons held (clear) withdraw it. It survives a failed
read, since the retry is usually the same patient.

Degrade, never die: a display, the buttons, the LED or the buzzer may fail (`PartHealth`); the box goes on
reading and delivering with what is left. Without buttons the configured default consent is the only one;
with none configured, a read that needs a press is audited `no-consent` at once instead of waiting.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from mynabox.core import screens
from mynabox.core.effects import (
    Buzz,
    Effect,
    ForgetPatient,
    LedMode,
    PublishState,
    RebootForUpdate,
    RecordOutcome,
    SetLed,
    ShowScreen,
    StartDelivery,
    Stop,
    Tone,
)
from mynabox.core.events import (
    BrokerOffline,
    BrokerOnline,
    CardPresent,
    CardRead,
    CardReadFailed,
    ClearRequested,
    ClockSync,
    ConsentPressed,
    Event,
    LookupDone,
    LookupOutcome,
    PartHealth,
    QueueDepth,
    ReaderMissing,
    ReaderPresent,
    ShutdownRequested,
    Tick,
    UpdatePending,
)
from mynabox.core.screens import Screen, ScreenKind, Status
from mynabox.record import record
from mynabox.update import policy
from mynabox.vocab import ConsentMode, Outcome, Part, ReadFailure


class State(enum.Enum):
    IDLE = "idle"
    READING = "reading"
    CONSENT = "consent"
    LOOKING_UP = "looking-up"
    RESULT = "result"
    NOTICE = "notice"  # a failure or not-registered screen, auto-cleared
    STOPPED = "stopped"


@record
class MachineConfig:
    consent_window_s: float = 30.0  # a press this long before the tap counts for it
    consent_timeout_s: float = 60.0  # no press this long after the read: no lookup
    default_consent: ConsentMode | None = None  # boxes without buttons
    result_clear_s: float = 60.0
    error_clear_s: float = 15.0
    update_idle_s: float = policy.IDLE_S  # no read this long before the switch to an installed update


_FAILURE_SCREENS: dict[ReadFailure, tuple[Callable[[Status], Screen], Tone, Outcome]] = {
    ReadFailure.REMOVED: (screens.hold_again, Tone.HOLD_AGAIN, Outcome.CARD_REMOVED),
    ReadFailure.UNRESPONSIVE: (screens.card_unresponsive, Tone.HOLD_AGAIN, Outcome.CARD_UNRESPONSIVE),
    ReadFailure.NOT_MY_NUMBER_CARD: (screens.not_my_number_card, Tone.ERROR, Outcome.NOT_MY_NUMBER_CARD),
    ReadFailure.MALFORMED: (screens.read_error, Tone.ERROR, Outcome.READ_FAILED),
    ReadFailure.READER_ERROR: (screens.hold_again, Tone.HOLD_AGAIN, Outcome.READ_FAILED),
}


class Controller:
    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self.state = State.IDLE
        self.status = Status()
        self.reader_present = True
        self._deadline: datetime | None = None
        self._consent: tuple[ConsentMode, datetime] | None = None  # a press waiting for a tap
        self._card: CardRead | None = None  # held between read and delivery only
        self._seen = 0  # the newest read this controller has heard of (CardPresent / CardRead)
        self._looking_up: str | None = None  # card hash of the read being looked up
        self._superseded = False  # another card was read meanwhile: its result must not look like theirs
        self._cleared = False  # both buttons held during the lookup: its result is not shown at all
        self._screen: Screen = screens.ready(self.status)
        self._labels: tuple[str, ...] = ()  # the result screen's flags, to redraw it when the status changes
        self._last_read: datetime | None = None  # the last card activity (tap, read, failure)
        self._update = _Update.NONE

    # -- the one entry point -----------------------------------------------------------------------

    def handle(self, event: Event, now: datetime) -> list[Effect]:
        if isinstance(event, CardPresent | CardRead):
            self._seen = max(self._seen, event.read)
        if isinstance(event, CardPresent | CardRead | CardReadFailed):
            self._last_read = now
        handler = TRANSITIONS.get((self.state, type(event)))
        if handler is not None:
            return handler(self, event, now)
        if isinstance(event, _CONDITIONS):
            return [*self._condition(event, now), *self._switch(now)]
        if isinstance(event, Tick):
            return [*self._tick(now), *self._switch(now)]
        if isinstance(event, UpdatePending):
            if self._update is _Update.NONE:
                self._update = _Update.PENDING
            return self._switch(now)
        if isinstance(event, ShutdownRequested):
            return self._shutdown()
        return []  # Rule 4

    def start(
        self, *, clock_synced: bool = True, queued: int = 0, failed: tuple[Part, ...] = ()
    ) -> list[Effect]:
        """What to show when the daemon comes up; the first published state already carries the clock, the
        outbox and the parts that failed to start as they are (a default first, corrected a moment later,
        reads as a flap to fleet ops)."""
        failed = tuple(p for p in Part if p in failed)
        self.status = replace(self.status, clock_synced=clock_synced, queued=queued, failed=failed)
        return [*self._show(self._idle_screen()), SetLed(LedMode.READY), self._publish()]

    @property
    def deadline(self) -> datetime | None:
        """When the current state times out (the loop need not wake before then)."""
        return self._deadline

    @property
    def screen(self) -> Screen:
        return self._screen

    # -- helpers ------------------------------------------------------------------------------------

    def _show(self, screen: Screen) -> list[Effect]:
        self._screen = screen
        if screen.kind is not ScreenKind.RESULT:  # the flags are health data: they go with their screen
            self._labels = ()
        return [ShowScreen(screen)]

    def _redraw(self) -> list[Effect]:
        return self._show(replace(self._screen, status=self.status))

    def _publish(self) -> PublishState:
        return PublishState(
            self.state.value,
            self.reader_present,
            self.status.broker_online,
            self.status.clock_synced,
            self.status.queued,
            self.status.failed,
        )

    def _idle_screen(self) -> Screen:
        if not self.reader_present:
            return screens.reader_missing(self.status)
        if self._consent is not None:
            return screens.ready_consented(self._consent[0], self.status)
        return screens.ready(self.status)

    def _go(self, state: State, deadline_s: float | None, now: datetime) -> None:
        self.state = state
        self._deadline = None if deadline_s is None else now + timedelta(seconds=deadline_s)

    def _to_idle(self, now: datetime) -> list[Effect]:
        self.state, self._card = State.IDLE, None
        self._deadline = self._press_expires(now)  # the ready screen shows a waiting press until then
        effects = [ForgetPatient(self._seen), *self._show(self._idle_screen())]
        return [*effects, SetLed(LedMode.READY), self._publish()]

    def _press_expires(self, now: datetime) -> datetime | None:
        """When the waiting press stops counting; an expired one is dropped here."""
        if self._consent is not None:
            expires = self._consent[1] + timedelta(seconds=self.config.consent_window_s)
            if now <= expires:
                return expires
            self._consent = None
        return None

    def _pending_consent(self, now: datetime) -> ConsentMode | None:
        if self._press_expires(now) is not None and self._consent is not None:
            return self._consent[0]
        return self.config.default_consent

    def _deliver(self, card: CardRead, consent: ConsentMode, now: datetime) -> list[Effect]:
        self._consent, self._card = None, None
        self._looking_up, self._superseded, self._cleared = card.card_hash, False, False
        self._go(State.LOOKING_UP, None, now)
        return [
            StartDelivery(card.read, card.card_hash, consent),
            *self._show(screens.looking_up(self.status)),
        ]

    def _no_consent(self) -> RecordOutcome:
        """The audit record of the read waiting at the consent prompt that will not be looked up."""
        card_hash = self._card.card_hash if self._card else None
        return RecordOutcome(Outcome.NO_CONSENT, ConsentMode.NONE, card_hash)

    def _no_buttons(self, now: datetime) -> list[Effect]:
        record = self._no_consent()
        self._card = None
        return [record, *self._notice(screens.no_buttons(self.status), Tone.ERROR, now)]

    def _notice(self, screen: Screen, tone: Tone, now: datetime) -> list[Effect]:
        self._go(State.NOTICE, self.config.error_clear_s, now)
        return [*self._show(screen), Buzz(tone), SetLed(LedMode.ERROR), self._publish()]

    # -- transitions --------------------------------------------------------------------------------

    def _card_present(self, event: Event, now: datetime) -> list[Effect]:
        assert isinstance(event, CardPresent)
        effects: list[Effect] = [ForgetPatient(event.read - 1)] if self.state is not State.IDLE else []
        self._card = None
        self._go(State.READING, None, now)
        return [*effects, *self._show(screens.reading(self.status)), SetLed(LedMode.BUSY), self._publish()]

    def _card_read(self, event: Event, now: datetime) -> list[Effect]:
        assert isinstance(event, CardRead)
        consent = self._pending_consent(now)
        if consent is not None:
            return self._deliver(event, consent, now)
        self._card = event
        if Part.BUTTONS in self.status.failed:  # nobody can answer the prompt: say so now
            return self._no_buttons(now)
        self._go(State.CONSENT, self.config.consent_timeout_s, now)
        return [*self._show(screens.consent(self.status)), Buzz(Tone.ATTENTION), self._publish()]

    def _read_failed(self, event: Event, now: datetime) -> list[Effect]:
        assert isinstance(event, CardReadFailed)
        make, tone, outcome = _FAILURE_SCREENS[event.kind]
        return [RecordOutcome(outcome, ConsentMode.NONE, None), *self._notice(make(self.status), tone, now)]

    def _consent_early(self, event: Event, now: datetime) -> list[Effect]:
        assert isinstance(event, ConsentPressed)
        self._consent = (event.mode, now)
        if self.state is State.IDLE:
            self._deadline = self._press_expires(now)
            return [Buzz(Tone.OK), *self._show(self._idle_screen())]
        return [Buzz(Tone.OK)]  # reading or a notice: the screen stays; the ready screen shows it after

    def _consent_given(self, event: Event, now: datetime) -> list[Effect]:
        assert isinstance(event, ConsentPressed) and self._card is not None
        return [Buzz(Tone.OK), *self._deliver(self._card, event.mode, now)]

    def _card_replaces_pending(self, event: Event, now: datetime) -> list[Effect]:
        """A new tap while the box asks for consent: the crew start over; the waiting read is audited."""
        self._consent = None  # a press belongs to the read it was made for
        return [self._no_consent(), *self._card_present(event, now)]

    def _read_while_busy(self, event: Event, _now: datetime) -> list[Effect]:
        # Its certificate stays in the holding until the next ForgetPatient: forgetting it here could
        # race the delivery worker taking the read being looked up.
        assert isinstance(event, CardRead)
        self._superseded |= event.card_hash != self._looking_up
        return [RecordOutcome(Outcome.BUSY, ConsentMode.NONE, event.card_hash)]

    def _failed_while_busy(self, event: Event, _now: datetime) -> list[Effect]:
        assert isinstance(event, CardReadFailed)
        self._superseded = True  # which card it was is unknown: it may have been another patient's
        return [RecordOutcome(_FAILURE_SCREENS[event.kind][2], ConsentMode.NONE, None)]

    def _clear_when_done(self, _event: Event, _now: datetime) -> list[Effect]:
        self._cleared = True
        return [Buzz(Tone.OK)]  # heard at once; the screen clears when the lookup ends

    def _consent_cancelled(self, _event: Event, now: datetime) -> list[Effect]:
        return [self._no_consent(), *self._to_idle(now)]

    def _lookup_done(self, event: Event, now: datetime) -> list[Effect]:
        assert isinstance(event, LookupDone)
        self.status = replace(self.status, queued=event.queued)
        superseded, self._looking_up, self._superseded = self._superseded, None, False
        cleared, self._cleared = self._cleared, False
        if cleared:  # the crew cleared the screen while waiting: the summary still goes to the gateway
            return self._to_idle(now)
        if superseded:  # the card on the reader now is not the one these flags belong to
            return self._notice(screens.other_card(self.status), Tone.HOLD_AGAIN, now)
        if event.outcome is LookupOutcome.FOUND:
            self._go(State.RESULT, self.config.result_clear_s, now)
            self._labels = tuple(flag.label for flag in event.flags)
            tone = Tone.ATTENTION if self._labels else Tone.OK
            return [
                *self._show(screens.result(self._labels, self.status)),
                Buzz(tone),
                SetLed(LedMode.OK),
                self._publish(),
            ]
        if event.outcome is LookupOutcome.NOT_REGISTERED:
            return self._notice(screens.not_registered(self.status), Tone.ERROR, now)
        return self._notice(screens.unavailable(self.status), Tone.ERROR, now)

    def _clear(self, _event: Event, now: datetime) -> list[Effect]:
        self._consent = None  # the crew start over: a press made for someone withdrawn too
        return self._to_idle(now)

    # -- rules 1-3 ----------------------------------------------------------------------------------

    def _condition(self, event: Event, now: datetime) -> list[Effect]:
        if isinstance(event, ReaderPresent | ReaderMissing):
            self.reader_present = isinstance(event, ReaderPresent)
        elif isinstance(event, BrokerOnline | BrokerOffline):
            self.status = replace(self.status, broker_online=isinstance(event, BrokerOnline))
        elif isinstance(event, ClockSync):
            self.status = replace(self.status, clock_synced=event.synced)
        elif isinstance(event, QueueDepth):
            self.status = replace(self.status, queued=event.queued)
        elif isinstance(event, PartHealth):
            failed = set(self.status.failed) - {event.part} | (set() if event.working else {event.part})
            self.status = replace(self.status, failed=tuple(p for p in Part if p in failed))
            if self.state is State.CONSENT and Part.BUTTONS in failed:  # the prompt can no longer be answered
                return self._no_buttons(now)
        if self.state is State.IDLE:
            return [*self._show(self._idle_screen()), self._publish()]
        if self.state is State.RESULT:
            return [*self._show(screens.result(self._labels, self.status)), self._publish()]
        return [*self._redraw(), self._publish()]

    def update_waits(self, now: datetime) -> str | None:
        """Why an installed update does not switch now (None: it does, or none is waiting)."""
        if self._update is not _Update.PENDING:
            return None
        if self.state is not State.IDLE:
            return f"the box is {self.state.value}"
        last = None if self._last_read is None else self._last_read.timestamp()
        activity = policy.Activity(False, last, self.status.queued)
        return policy.idle_reason(activity, now.timestamp(), self.config.update_idle_s)

    def _switch(self, now: datetime) -> list[Effect]:
        """Rule 5: the reboot into an installed update, once, when the box is idle."""
        if self._update is not _Update.PENDING or self.update_waits(now) is not None:
            return []
        self._update = _Update.SWITCHING
        return [RebootForUpdate("idle: no card, no read for the idle time, the outbox empty")]

    def _tick(self, now: datetime) -> list[Effect]:
        if self._deadline is None or now < self._deadline:
            return []
        if self.state is State.CONSENT:
            record = self._no_consent()
            self._card = None
            return [record, *self._notice(screens.no_consent(self.status), Tone.ERROR, now)]
        return self._to_idle(now)  # also a waiting press that has run out: the plain ready screen

    def _shutdown(self) -> list[Effect]:
        self.state, self._deadline, self._card = State.STOPPED, None, None
        return [
            ForgetPatient(self._seen),
            *self._show(screens.stopped(self.status)),
            SetLed(LedMode.OFF),
            self._publish(),
            Stop(),
        ]


class _Update(enum.Enum):
    NONE = "none"
    PENDING = "pending"  # installed, waiting for idle
    SWITCHING = "switching"  # the reboot was asked for


_CONDITIONS = (ReaderPresent, ReaderMissing, BrokerOnline, BrokerOffline, ClockSync, QueueDepth, PartHealth)

Handler = Callable[[Controller, Event, datetime], list[Effect]]

TRANSITIONS: dict[tuple[State, type], Handler] = {
    (State.IDLE, CardPresent): Controller._card_present,
    (State.IDLE, ConsentPressed): Controller._consent_early,
    (State.IDLE, ClearRequested): Controller._clear,
    (State.READING, CardRead): Controller._card_read,
    (State.READING, CardReadFailed): Controller._read_failed,
    (State.READING, ConsentPressed): Controller._consent_early,
    (State.CONSENT, CardPresent): Controller._card_replaces_pending,
    (State.CONSENT, ConsentPressed): Controller._consent_given,
    (State.CONSENT, ClearRequested): Controller._consent_cancelled,
    (State.LOOKING_UP, LookupDone): Controller._lookup_done,
    (State.LOOKING_UP, CardRead): Controller._read_while_busy,
    (State.LOOKING_UP, CardReadFailed): Controller._failed_while_busy,
    (State.LOOKING_UP, ClearRequested): Controller._clear_when_done,
    (State.RESULT, CardPresent): Controller._card_present,
    (State.RESULT, ClearRequested): Controller._clear,
    (State.NOTICE, CardPresent): Controller._card_present,
    (State.NOTICE, ClearRequested): Controller._clear,
    (State.NOTICE, ConsentPressed): Controller._consent_early,
}
