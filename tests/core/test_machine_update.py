"""Rule 5: an installed update switches (RebootForUpdate) only when the box is idle, once, never mid-read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mynabox.core import events as ev
from mynabox.core.effects import RebootForUpdate
from mynabox.core.machine import Controller, MachineConfig, State
from mynabox.summary.flags import Flag, FlagCode
from mynabox.vocab import ConsentMode, ReadFailure

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
IDLE_S = 900.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reboots(effects: list[object]) -> list[RebootForUpdate]:
    return [e for e in effects if isinstance(e, RebootForUpdate)]


def box() -> Controller:
    controller = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT, update_idle_s=IDLE_S))
    controller.start()
    return controller


def test_an_idle_box_switches_at_once_and_only_once() -> None:
    controller = box()
    assert reboots(controller.handle(ev.UpdatePending(), at(0)))
    assert not reboots(controller.handle(ev.Tick(), at(1)))
    assert not reboots(controller.handle(ev.UpdatePending(), at(2)))


def test_no_switch_without_an_installed_update() -> None:
    controller = box()
    for second in range(0, 2000, 100):
        assert not reboots(controller.handle(ev.Tick(), at(second)))


def test_a_read_defers_the_switch_by_the_idle_time() -> None:
    controller = box()
    controller.handle(ev.CardPresent(1), at(0))
    # Pending during the read: not while reading, looking up, or showing the result.
    assert not reboots(controller.handle(ev.UpdatePending(), at(1)))
    assert not reboots(controller.handle(ev.CardRead(1, "ab" * 8), at(2)))
    assert controller.state is State.LOOKING_UP
    assert not reboots(controller.handle(ev.Tick(), at(3)))
    flag = Flag(FlagCode.ANTICOAGULANT, "抗凝固薬", ("ワルファリン",))
    assert not reboots(controller.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (flag,), 0), at(4)))
    assert controller.state is State.RESULT
    assert not reboots(controller.handle(ev.Tick(), at(70)))  # back to the ready screen
    assert controller.state is State.IDLE
    assert controller.update_waits(at(70)) == "a card was read 68 s ago (idle after 900 s)"
    assert not reboots(controller.handle(ev.Tick(), at(2 + IDLE_S - 1)))
    assert reboots(controller.handle(ev.Tick(), at(2 + IDLE_S)))


def test_a_queued_message_defers_the_switch_until_it_is_delivered() -> None:
    controller = box()
    controller.handle(ev.QueueDepth(2), at(0))
    assert not reboots(controller.handle(ev.UpdatePending(), at(1)))
    assert controller.update_waits(at(1)) == "2 message(s) still in the outbox"
    assert not reboots(controller.handle(ev.Tick(), at(500)))
    assert reboots(controller.handle(ev.QueueDepth(0), at(501)))


def test_a_failed_read_counts_as_card_activity() -> None:
    controller = box()
    controller.handle(ev.CardPresent(1), at(0))
    controller.handle(ev.CardReadFailed(ReadFailure.REMOVED), at(1))
    controller.handle(ev.UpdatePending(), at(2))
    assert not reboots(controller.handle(ev.Tick(), at(20)))  # the notice is gone, the read is recent
    assert controller.state is State.IDLE
    assert reboots(controller.handle(ev.Tick(), at(1 + IDLE_S)))
