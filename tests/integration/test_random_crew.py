"""A random crew against the whole box on the real stack, then the promises that must still hold.

The box runs in this process (as in `make demo`) so the crew can press 同意 / 緊急 on gpiozero's mock pins;
everything else is real: pcscd with the vpcd reader and virtual cards, the reference service over HTTPS,
mosquitto with TLS, SQLite, the gateway receiver. A seeded crew taps cards of every synthetic patient,
pulls them mid-read, taps wrong cards, presses before the tap, after it or never, holds both buttons to
clear (at the consent prompt, or after a press made before the tap, which must then not count), taps again
at once, and the broker goes away and comes back. Afterwards:

- no exception and no error was logged, and the box still reads a card to the end;
- every read the card worker started left exactly one audit record, and the chain verifies;
- every summary, card record and audit record reached the gateway exactly once;
- no read's certificate is left in memory.

MYNABOX_CREW_SEED replays a run (the seed is in the failure message) or, set to `random`, explores a new one;
MYNABOX_CREW_STEPS sets its length.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.vocab import Outcome
from mynabox_testkit.inprocess import BoxThread, Buttons, running_box
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import PATIENTS, patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.wait import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]
# A fixed crew in CI (the same story each run; timing still varies); MYNABOX_CREW_SEED=random explores.
_SEED = os.environ.get("MYNABOX_CREW_SEED", "1")  # its story has every kind of step
SEED = random.randrange(2**32) if _SEED == "random" else int(_SEED)
STEPS = int(os.environ.get("MYNABOX_CREW_STEPS", "24"))
FAULTS = (
    Faults(),
    Faults(),
    Faults(latency_s=0.01, baud=106),
    Faults(remove_after=1),  # pulled after SELECT
    Faults(remove_after=2),  # pulled mid-certificate
    Faults(non_jpki=True),  # a transit card
    Faults(truncate=7),  # a card whose answers come back short
)


def _stuck(crew: Crew) -> str:
    """What the box was doing when a tap went unseen: its state, the card worker's stack, the crew's story."""
    worker = next((t for t in threading.enumerate() if t.name == "card-worker"), None)
    frame = sys._current_frames().get(worker.ident or -1) if worker is not None else None
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "no card worker"
    return f"state {crew.state()}\n{stack}\n" + "; ".join(crew.did)


def _short(faults: Faults) -> str:
    return ",".join(f"{k}={v}" for k, v in vars(faults).items() if v not in (None, 0, 0.0, False)) or "good"


class Problems(logging.Handler):
    """Keeps every error and every logged exception (a log line that says the box failed)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.seen.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def problems() -> Iterator[Problems]:
    handler = Problems()
    root = logging.getLogger()
    root.addHandler(handler)
    failed_threads: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failed_threads.append(f"thread {args.thread}: {args.exc_type}")
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        threading.excepthook = previous
        handler.seen += failed_threads


class Crew:
    def __init__(self, box: BoxThread, buttons: Buttons, stack: BoxStack, rng: random.Random) -> None:
        assert stack.pcscd is not None
        self.box, self.stack, self.rng = box, stack, rng
        self.buttons = buttons
        self.card = VpcdCardServer(VirtualMyNumberCard(PATIENTS[0].card_id), port=stack.pcscd.vpcd_port)
        self.did: list[str] = []
        self.broken: list[str] = []  # promises broken while the crew worked

    def note(self, what: str) -> None:
        self.did.append(f"{time.strftime('%H:%M:%S')} {what}")

    def state(self) -> str:
        assert self.box.parts.controller is not None
        return self.box.parts.controller.state.value

    def tap(self) -> None:
        rng = self.rng
        who = rng.choice(PATIENTS)
        faults = rng.choice(FAULTS)
        button = rng.choice((self.buttons.consent, self.buttons.emergency))
        when = rng.choice(("before", "after", "after", "never", "clear", "withdrawn"))
        self.note(f"tap {who.key} {_short(faults)} press {when}")
        assert self.stack.pcscd is not None
        self.stack.pcscd.wait_empty()
        if when == "withdrawn":  # pressed at the ready screen, then both held: it must not count
            wait_for(lambda: self.state() == "idle", 10)  # not a prompt or lookup left from the last tap
        if when in ("before", "withdrawn"):
            self.buttons.press(button)
        if when == "withdrawn":
            self.buttons.hold_both()
        self.card.insert(VirtualMyNumberCard(who.card_id, faults=faults))
        wait_for(lambda: self.state() not in ("idle", "reading"), 5)
        if when == "withdrawn" and self.state() in ("looking-up", "result"):  # used without being asked
            self.broken.append(f"{self.did[-1]}: a withdrawn press was used")
        if self.state() == "consent":
            if when == "after":
                time.sleep(rng.uniform(0, 0.8))
                self.buttons.press(button)
            elif when == "clear":
                self.buttons.hold_both()
        time.sleep(rng.uniform(0, 1.5))  # how long the card stays on the reader
        self.card.remove()

    def broker(self) -> None:
        broker = self.stack.broker
        assert broker is not None
        if broker.running:
            self.note("broker stop")
            broker.stop()
        else:
            self.note("broker start")
            broker.start()

    def quick_retap(self) -> None:
        """The same card again at once, while the box may still be looking up or showing the result."""
        assert self.stack.pcscd is not None
        self.note("quick retap")
        self.card.insert(VirtualMyNumberCard(patient("healthy").card_id))
        wait_for(lambda: self.state() not in ("idle", "reading"), 5)
        self.buttons.press(self.buttons.consent)
        self.card.remove()
        self.stack.pcscd.wait_empty()
        self.card.insert()
        time.sleep(0.3)
        self.card.remove()


def test_a_random_crew_cannot_break_the_promises(tmp_path: Path, problems: Problems) -> None:
    rng = random.Random(SEED)
    with BoxStack(
        device_id="amb-crew",
        consent_default="none",
        consent_timeout_s=2,
        result_clear_s=1,
        workdir=tmp_path / "stack",
        config_extra={"display": {"error_clear_s": 1}},
    ) as stack:
        assert stack.pcscd is not None and stack.broker is not None
        stack.pcscd.use_in_process()
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append, client_id="gw-crew")
        receiver.start()
        crew: Crew | None = None
        try:
            with running_box(stack) as (box, buttons):
                try:
                    crew = Crew(box, buttons, stack, rng)
                    for _ in range(STEPS):
                        rng.choices((crew.tap, crew.broker, crew.quick_retap), weights=(8, 1, 1))[0]()
                    # The crew is done: the broker is back, one last ordinary read goes to the end.
                    if not stack.broker.running:
                        stack.broker.start()
                    assert wait_for(lambda: crew is not None and crew.state() == "idle", 20), crew.state()
                    stack.pcscd.wait_empty()
                    # Pressed first: a press the crew made within consent.window_s before is used by this
                    # tap anyway, so the box may never stop at the consent prompt.
                    crew.buttons.press(crew.buttons.consent)
                    crew.card.insert(VirtualMyNumberCard(patient("warfarin-elderly").card_id))
                    assert wait_for(lambda: crew is not None and crew.state() == "result", 15), _stuck(crew)
                    crew.card.remove()
                    outbox = box.parts.outbox
                    assert outbox is not None
                    assert wait_for(lambda: outbox.depth() == 0, 60), f"{outbox.depth()} still queued"
                    assert wait_for(lambda: crew is not None and crew.state() == "idle", 20), crew.state()
                    cards = box.parts.cards
                    assert cards is not None
                    reads, held = cards.reads, box.parts.holding.held
                finally:
                    if crew is not None:
                        crew.card.remove()
            # The box is stopped: its audit log is final; the broker forwards what it acknowledged.
            config = box.config
            audit = AuditLog(
                config.storage.state_dir / "audit.jsonl", key=load_audit_key(config.audit.key.path)
            )
            wait_for(lambda: len([o for o in opened if o.kind is Kind.AUDIT]) >= len(audit), 20)
        finally:
            receiver.stop()
        story = f"seed {SEED}: " + "; ".join(crew.did if crew else [])
        assert problems.seen == [], story
        assert crew is not None and crew.broken == [], story
        assert held == 0, story  # no certificate left in memory
        assert audit.verify().ok, story
        records = audit.entries()
        outcomes = Counter(r.record.outcome for r in records)
        assert sum(n for o, n in outcomes.items() if o is not Outcome.PURGED) == reads, (story, outcomes)
    kinds = Counter(o.kind for o in opened)
    assert len({o.message_id for o in opened}) == len(opened), story  # exactly once
    got = {o.body.get("hash") for o in opened if o.kind is Kind.AUDIT}
    lost = [(e.record.time.time().isoformat(), e.record.outcome.value) for e in records if e.hash not in got]
    assert lost == [] and kinds[Kind.AUDIT] == len(records), (story, lost, kinds)
    delivered = (
        outcomes[Outcome.DELIVERED_SUMMARY] + outcomes[Outcome.CARD_RECORD] + outcomes[Outcome.NOT_REGISTERED]
    )
    assert kinds[Kind.SUMMARY] + kinds[Kind.CARD_RECORD] == delivered, (story, kinds, outcomes)
