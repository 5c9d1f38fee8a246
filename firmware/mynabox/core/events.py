"""What happened: adapters post these into the daemon's one queue; the controller decides."""

from __future__ import annotations

import enum

from mynabox.record import Signal, record
from mynabox.summary.flags import Flag
from mynabox.vocab import ConsentMode, Part, ReadFailure


class LookupOutcome(enum.Enum):
    FOUND = "found"
    NOT_REGISTERED = "not-registered"
    UNAVAILABLE = "unavailable"


@record
class CardPresent:
    """A card entered the field; reading starts. `read` numbers the reads of this process, so that a
    decision about one read (forget it, deliver it) never touches a newer one the loop has not seen yet."""

    read: int


@record
class CardRead:
    """A read finished. Only its number and the card's keyed hash travel: the certificate (personal data)
    stays in the holding the card worker keeps it in, from which the delivery takes it by this number."""

    read: int
    card_hash: str


@record
class CardReadFailed:
    kind: ReadFailure


@record
class ConsentPressed:
    mode: ConsentMode


class ClearRequested(Signal):
    """Both buttons held: clear the screen now."""


@record
class LookupDone:
    outcome: LookupOutcome
    flags: tuple[Flag, ...]
    queued: int


@record
class QueueDepth:
    queued: int


class ReaderPresent(Signal):
    pass


class ReaderMissing(Signal):
    pass


class BrokerOnline(Signal):
    pass


class BrokerOffline(Signal):
    pass


@record
class PartHealth:
    """A part (display, buttons, LED, buzzer) stopped working or came back; the box goes on either way."""

    part: Part
    working: bool


@record
class ClockSync:
    synced: bool


class UpdatePending(Signal):
    """An installed update waits for the switch: the other slot is now the one to boot (RAUC made it
    primary). The box reboots into it once idle (mynabox.update.policy), never during a read."""


class Tick(Signal):
    """Time passes: deadlines (consent, auto-clear) are checked."""


class ShutdownRequested(Signal):
    pass


Event = (
    CardPresent
    | CardRead
    | CardReadFailed
    | ConsentPressed
    | ClearRequested
    | LookupDone
    | QueueDepth
    | ReaderPresent
    | ReaderMissing
    | BrokerOnline
    | BrokerOffline
    | ClockSync
    | PartHealth
    | UpdatePending
    | Tick
    | ShutdownRequested
)
EVENT_TYPES: tuple[type[Event], ...] = Event.__args__
