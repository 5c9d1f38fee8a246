"""What to do: the controller returns these; the daemon's loop applies them in order."""

from __future__ import annotations

import enum

from mynabox.core.screens import Screen
from mynabox.record import Signal, record
from mynabox.vocab import ConsentMode, Outcome, Part


class Tone(enum.Enum):
    OK = "ok"
    HOLD_AGAIN = "hold-again"
    ERROR = "error"
    ATTENTION = "attention"


class LedMode(enum.Enum):
    READY = "ready"
    BUSY = "busy"
    OK = "ok"
    ERROR = "error"
    OFF = "off"


@record
class ShowScreen:
    screen: Screen


@record
class Buzz:
    tone: Tone


@record
class SetLed:
    mode: LedMode


@record
class StartDelivery:
    """Look up, seal, queue and audit (on a worker); the worker posts LookupDone. The delivery takes the
    read's record (its certificate) from the holding by `read`, checked against `card_hash`."""

    read: int
    card_hash: str
    consent: ConsentMode


@record
class RecordOutcome:
    """A read that ends without a delivery still leaves an audit record."""

    outcome: Outcome
    consent: ConsentMode
    card_hash: str | None


@record
class ForgetPatient:
    """Drop everything patient-related held in memory for reads up to `upto` (the screen was cleared).

    Newer reads survive: their card may already be read while the loop has yet to handle its CardPresent."""

    upto: int


@record
class PublishState:
    state: str
    reader_present: bool
    broker_online: bool
    clock_synced: bool
    queued: int
    failed: tuple[Part, ...] = ()  # parts that do not work now (the box reads and delivers without them)


@record
class RebootForUpdate:
    """Reboot into the slot an update installed: the box is idle (why: `reason`). systemd stops the daemon
    as for any shutdown (ShutdownRequested), so the outbox and the audit log are closed as usual."""

    reason: str


class Stop(Signal):
    """Shut down: the loop ends after applying the effects before this one."""


Effect = (
    ShowScreen
    | Buzz
    | SetLed
    | StartDelivery
    | RecordOutcome
    | ForgetPatient
    | PublishState
    | RebootForUpdate
    | Stop
)
