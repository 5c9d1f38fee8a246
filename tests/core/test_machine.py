"""The box's state machine: the table, each path with `now` advanced, and random event sequences."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.core import events as ev
from mynabox.core.effects import (
    Buzz,
    Effect,
    ForgetPatient,
    PublishState,
    RecordOutcome,
    ShowScreen,
    StartDelivery,
    Stop,
    Tone,
)
from mynabox.core.machine import TRANSITIONS, Controller, MachineConfig, State
from mynabox.core.screens import ScreenKind
from mynabox.summary.flags import Flag, FlagCode
from mynabox.vocab import ConsentMode, Outcome, Part, ReadFailure

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
READ = ev.CardRead(read=1, card_hash="0123456789abcdef")
WARFARIN = Flag(FlagCode.ANTICOAGULANT, "抗凝固薬", ("ワルファリン",))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def screen_of(effects: list[object]) -> ScreenKind:
    shown = [e.screen.kind for e in effects if isinstance(e, ShowScreen)]
    assert shown, f"no screen in {effects}"
    return shown[-1]


def test_happy_path_with_consent_after_the_tap() -> None:
    box = Controller(MachineConfig())
    assert screen_of(box.start()) is ScreenKind.READY
    assert screen_of(box.handle(ev.CardPresent(1), at(0))) is ScreenKind.READING
    effects = box.handle(READ, at(0.2))
    assert box.state is State.CONSENT and screen_of(effects) is ScreenKind.CONSENT
    effects = box.handle(ev.ConsentPressed(ConsentMode.ORAL_CONSENT), at(3))
    starts = [e for e in effects if isinstance(e, StartDelivery)]
    assert starts == [StartDelivery(1, READ.card_hash, ConsentMode.ORAL_CONSENT)]
    assert box.state is State.LOOKING_UP
    effects = box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), queued=0), at(4))
    assert box.state is State.RESULT
    assert box.screen.lines == ("抗凝固薬",) and box.screen.header.endswith("送信済")
    assert Buzz(Tone.ATTENTION) in effects  # a critical flag sounds different from "nothing found"
    # Auto-clear after result_clear_s: the patient's flags leave the screen and memory.
    assert box.handle(ev.Tick(), at(63)) == []
    effects = box.handle(ev.Tick(), at(64.1))
    assert box.state is State.IDLE and ForgetPatient(1) in effects
    assert screen_of(effects) is ScreenKind.READY


def test_consent_pressed_before_the_tap_counts_within_the_window() -> None:
    box = Controller(MachineConfig(consent_window_s=30))
    box.handle(ev.ConsentPressed(ConsentMode.LIFE_SAVING_EXCEPTION), at(0))
    box.handle(ev.CardPresent(1), at(10))
    effects = box.handle(READ, at(10.2))
    assert [e.consent for e in effects if isinstance(e, StartDelivery)] == [ConsentMode.LIFE_SAVING_EXCEPTION]


def test_consent_pressed_too_long_before_is_ignored() -> None:
    box = Controller(MachineConfig(consent_window_s=30))
    box.handle(ev.ConsentPressed(ConsentMode.ORAL_CONSENT), at(0))
    box.handle(ev.CardPresent(1), at(40))
    box.handle(READ, at(40.2))
    assert box.state is State.CONSENT


def test_a_press_before_the_tap_shows_on_the_ready_screen_until_it_runs_out() -> None:
    box = Controller(MachineConfig(consent_window_s=30))
    box.start()
    effects = box.handle(ev.ConsentPressed(ConsentMode.ORAL_CONSENT), at(0))
    assert screen_of(effects) is ScreenKind.READY_CONSENTED and box.screen.lines[0] == "同意あり選択済"
    assert Buzz(Tone.OK) in effects and box.deadline == at(30)
    effects = box.handle(ev.ConsentPressed(ConsentMode.LIFE_SAVING_EXCEPTION), at(5))  # the crew change it
    assert box.screen.lines[0] == "同意困難選択済" and box.deadline == at(35)
    assert box.handle(ev.Tick(), at(34)) == []
    assert screen_of(box.handle(ev.Tick(), at(35.5))) is ScreenKind.READY and box.deadline is None
    box.handle(ev.CardPresent(1), at(36))
    box.handle(READ, at(36.2))
    assert box.state is State.CONSENT  # run out: the box asks again


def test_both_buttons_held_withdraw_a_waiting_press() -> None:
    box = Controller(MachineConfig(consent_window_s=30))
    box.handle(ev.ConsentPressed(ConsentMode.ORAL_CONSENT), at(0))
    assert screen_of(box.handle(ev.ClearRequested(), at(3))) is ScreenKind.READY
    box.handle(ev.CardPresent(1), at(4))
    effects = box.handle(READ, at(4.2))
    assert box.state is State.CONSENT and not [e for e in effects if isinstance(e, StartDelivery)]


def test_a_press_survives_a_failed_read_and_shows_when_the_notice_clears() -> None:
    box = Controller(MachineConfig(consent_window_s=30, error_clear_s=15))
    box.handle(ev.ConsentPressed(ConsentMode.LIFE_SAVING_EXCEPTION), at(0))
    box.handle(ev.CardPresent(1), at(1))
    effects = box.handle(ev.CardReadFailed(ReadFailure.REMOVED), at(1.2))
    assert screen_of(effects) is ScreenKind.HOLD_AGAIN
    effects = box.handle(ev.Tick(), at(16.3))
    assert screen_of(effects) is ScreenKind.READY_CONSENTED and box.deadline == at(30)
    box.handle(ev.CardPresent(2), at(20))
    effects = box.handle(replace(READ, read=2), at(20.2))
    assert [e.consent for e in effects if isinstance(e, StartDelivery)] == [ConsentMode.LIFE_SAVING_EXCEPTION]


def test_a_press_that_runs_out_during_a_notice_is_not_shown_after_it() -> None:
    box = Controller(MachineConfig(consent_window_s=10, error_clear_s=15))
    box.handle(ev.ConsentPressed(ConsentMode.ORAL_CONSENT), at(0))
    box.handle(ev.CardPresent(1), at(1))
    box.handle(ev.CardReadFailed(ReadFailure.REMOVED), at(1.2))
    effects = box.handle(ev.Tick(), at(16.3))
    assert screen_of(effects) is ScreenKind.READY and box.deadline is None


def test_default_consent_for_boxes_without_buttons() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    effects = box.handle(READ, at(0.1))
    assert any(isinstance(e, StartDelivery) for e in effects)


def test_consent_timeout_makes_no_lookup_and_is_audited() -> None:
    box = Controller(MachineConfig(consent_timeout_s=60, error_clear_s=15))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    effects = box.handle(ev.Tick(), at(61))
    assert RecordOutcome(Outcome.NO_CONSENT, ConsentMode.NONE, READ.card_hash) in effects
    assert not any(isinstance(e, StartDelivery) for e in effects)
    assert screen_of(effects) is ScreenKind.NO_CONSENT
    box.handle(ev.Tick(), at(77))
    assert box.state is State.IDLE


@pytest.mark.parametrize(
    ("kind", "screen", "outcome"),
    [
        (ReadFailure.REMOVED, ScreenKind.HOLD_AGAIN, Outcome.CARD_REMOVED),
        (ReadFailure.UNRESPONSIVE, ScreenKind.CARD_UNRESPONSIVE, Outcome.CARD_UNRESPONSIVE),
        (ReadFailure.NOT_MY_NUMBER_CARD, ScreenKind.NOT_MY_NUMBER_CARD, Outcome.NOT_MY_NUMBER_CARD),
        (ReadFailure.MALFORMED, ScreenKind.READ_ERROR, Outcome.READ_FAILED),
    ],
)
def test_read_failures_say_what_to_do_and_are_audited(
    kind: ev.ReadFailure, screen: ScreenKind, outcome: Outcome
) -> None:
    box = Controller(MachineConfig())
    box.handle(ev.CardPresent(1), at(0))
    effects = box.handle(ev.CardReadFailed(kind), at(0.3))
    assert screen_of(effects) is screen
    assert RecordOutcome(outcome, ConsentMode.NONE, None) in effects
    # The crew taps again at once: reading restarts without waiting for the auto-clear.
    assert screen_of(box.handle(ev.CardPresent(2), at(2))) is ScreenKind.READING


@pytest.mark.parametrize(
    ("outcome", "screen"),
    [
        (ev.LookupOutcome.NOT_REGISTERED, ScreenKind.NOT_REGISTERED),
        (ev.LookupOutcome.UNAVAILABLE, ScreenKind.UNAVAILABLE),
    ],
)
def test_lookup_failures(outcome: ev.LookupOutcome, screen: ScreenKind) -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    assert screen_of(box.handle(ev.LookupDone(outcome, (), queued=1), at(2))) is screen


def test_broker_offline_shows_queue_and_reads_still_work() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.BrokerOffline(), at(0))
    assert "回線断" in box.screen.status.text()
    box.handle(ev.CardPresent(1), at(1))
    box.handle(READ, at(1.1))
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (), queued=3), at(2))
    assert box.screen.header.endswith("送信待ち") and "未送信3件" in box.screen.status.text()
    box.handle(ev.BrokerOnline(), at(3))
    effects = box.handle(ev.QueueDepth(0), at(4))
    assert box.screen.header.endswith("送信済")
    assert any(isinstance(e, PublishState) and e.queued == 0 and e.broker_online for e in effects)


@pytest.mark.parametrize("count", [0, 1, 3, 4, 7])
def test_a_status_change_redraws_the_result_with_the_same_flags(count: int) -> None:
    flags = tuple(replace(WARFARIN, label=f"フラグ{i}") for i in range(count))
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, flags, queued=2), at(1))
    shown = box.screen
    box.handle(ev.QueueDepth(0), at(2))
    assert box.state is State.RESULT and box.screen.header.endswith("送信済")
    assert (box.screen.lines, box.screen.small) == (shown.lines, shown.small)
    assert box.screen.lines == (tuple(f.label for f in flags[:6]) or ("重要フラグ", "なし"))


def test_reader_missing_and_back() -> None:
    box = Controller(MachineConfig())
    assert screen_of(box.handle(ev.ReaderMissing(), at(0))) is ScreenKind.READER_MISSING
    assert screen_of(box.handle(ev.ReaderPresent(), at(1))) is ScreenKind.READY


def test_clear_by_both_buttons() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), queued=0), at(1))
    effects = box.handle(ev.ClearRequested(), at(2))
    assert box.state is State.IDLE and ForgetPatient(1) in effects


def test_a_new_tap_forgets_only_the_reads_before_it() -> None:
    """The card worker may finish read 2 before the loop handles its CardPresent: forgetting read 1's
    patient (screen cleared by the new tap, or by the auto-clear tick) must not drop read 2."""
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT, result_clear_s=1))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (), queued=0), at(0.2))
    effects = box.handle(ev.CardPresent(2), at(0.5))
    assert [e for e in effects if isinstance(e, ForgetPatient)] == [ForgetPatient(1)]
    second = ev.CardRead(2, "fedcba9876543210")
    starts = [e for e in box.handle(second, at(0.6)) if isinstance(e, StartDelivery)]
    assert [(s.read, s.card_hash) for s in starts] == [(2, second.card_hash)]
    # The auto-clear tick ran before the loop heard of read 3: it forgets up to read 2 only.
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (), queued=0), at(0.7))
    effects = box.handle(ev.Tick(), at(2))
    assert [e for e in effects if isinstance(e, ForgetPatient)] == [ForgetPatient(2)]


def test_a_new_tap_while_asking_for_consent_starts_over_and_audits_the_waiting_read() -> None:
    box = Controller(MachineConfig())
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    assert box.state is State.CONSENT
    effects = box.handle(ev.CardPresent(2), at(5))
    assert RecordOutcome(Outcome.NO_CONSENT, ConsentMode.NONE, READ.card_hash) in effects
    assert ForgetPatient(1) in effects and screen_of(effects) is ScreenKind.READING
    second = ev.CardRead(2, "fedcba9876543210")
    box.handle(second, at(5.1))
    effects = box.handle(ev.ConsentPressed(ConsentMode.ORAL_CONSENT), at(6))
    starts = [e for e in effects if isinstance(e, StartDelivery)]
    assert [(s.read, s.card_hash) for s in starts] == [(2, second.card_hash)]


def test_a_card_read_while_a_lookup_runs_is_audited_not_used() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    assert box.handle(ev.CardPresent(2), at(0.2)) == []  # the lookup's screen stays
    second = ev.CardRead(2, "fedcba9876543210")
    effects = box.handle(second, at(0.3))
    assert effects == [RecordOutcome(Outcome.BUSY, ConsentMode.NONE, second.card_hash)]
    assert box.state is State.LOOKING_UP
    box.handle(ev.CardPresent(3), at(0.35))
    effects = box.handle(ev.CardReadFailed(ReadFailure.REMOVED), at(0.36))
    assert effects == [RecordOutcome(Outcome.CARD_REMOVED, ConsentMode.NONE, None)]
    effects = box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), queued=0), at(0.4))
    # The first card's flags must not appear while another card is on the reader.
    assert screen_of(effects) is ScreenKind.OTHER_CARD and box.state is State.NOTICE
    assert "抗凝固薬" not in box.screen.lines and Buzz(Tone.HOLD_AGAIN) in effects
    effects = box.handle(ev.Tick(), at(100))
    assert ForgetPatient(3) in effects  # the unused reads leave memory with the screen


def test_the_same_card_read_again_during_its_lookup_still_gets_its_result() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    box.handle(ev.CardPresent(2), at(0.2))
    again = ev.CardRead(2, READ.card_hash)
    assert box.handle(again, at(0.3)) == [RecordOutcome(Outcome.BUSY, ConsentMode.NONE, READ.card_hash)]
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), queued=0), at(0.4))
    assert box.state is State.RESULT and box.screen.lines == ("抗凝固薬",)
    # The next lookup starts clean: a later different card does not inherit anything.
    box.handle(ev.Tick(), at(100))
    box.handle(ev.CardPresent(3), at(101))
    box.handle(ev.CardRead(3, "fedcba9876543210"), at(101.1))
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (), queued=0), at(101.2))
    assert box.state is State.RESULT


def test_clearing_during_the_lookup_keeps_its_result_off_the_screen() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.1))
    assert box.handle(ev.ClearRequested(), at(0.5)) == [Buzz(Tone.OK)]
    assert box.state is State.LOOKING_UP
    effects = box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), queued=1), at(1))
    assert box.state is State.IDLE and screen_of(effects) is ScreenKind.READY
    assert ForgetPatient(1) in effects and "未送信1件" in box.screen.status.text()
    # The next read shows its result as usual.
    box.handle(ev.CardPresent(2), at(5))
    box.handle(ev.CardRead(2, READ.card_hash), at(5.1))
    box.handle(ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), queued=0), at(5.2))
    assert box.state is State.RESULT and box.screen.lines == ("抗凝固薬",)


def test_shutdown_from_any_state() -> None:
    box = Controller(MachineConfig())
    box.handle(ev.CardPresent(1), at(0))
    effects = box.handle(ev.ShutdownRequested(), at(1))
    assert screen_of(effects) is ScreenKind.STOPPED and isinstance(effects[-1], Stop)


def test_every_state_and_event_has_a_rule() -> None:
    """Each (state, event) pair is in the table or covered by a documented rule; none raises."""
    for state in State:
        for event_type in ev.EVENT_TYPES:
            box = Controller(MachineConfig())
            box.state = state
            event = _sample(event_type)
            if (
                (state, event_type) in TRANSITIONS
                and state is State.CONSENT
                and event_type is ev.ConsentPressed
            ):
                box._card = READ  # the table's precondition for that pair
            box.handle(event, at(0))


def _sample(event_type: type) -> ev.Event:
    samples: dict[type, ev.Event] = {
        ev.CardPresent: ev.CardPresent(1),
        ev.CardRead: READ,
        ev.CardReadFailed: ev.CardReadFailed(ReadFailure.REMOVED),
        ev.ConsentPressed: ev.ConsentPressed(ConsentMode.ORAL_CONSENT),
        ev.LookupDone: ev.LookupDone(ev.LookupOutcome.FOUND, (WARFARIN,), 0),
        ev.QueueDepth: ev.QueueDepth(2),
        ev.ClockSync: ev.ClockSync(False),
        ev.PartHealth: ev.PartHealth(Part.BUTTONS, False),
    }
    return samples.get(event_type) or event_type()


events = st.sampled_from([_sample(t) for t in ev.EVENT_TYPES if t is not ev.ShutdownRequested])


@given(st.lists(st.tuples(events, st.floats(0, 30)), max_size=40))
def test_random_sequences_never_raise_and_return_to_idle(steps: list[tuple[ev.Event, float]]) -> None:
    box = Controller(MachineConfig(consent_timeout_s=20, result_clear_s=30, error_clear_s=10))
    now = T0
    for event, gap in steps:
        now += timedelta(seconds=gap)
        if (
            isinstance(event, ev.CardRead | ev.ConsentPressed)
            and box.state is State.CONSENT
            and box._card is None
        ):
            continue
        box.handle(event, now)
    if box.state is State.LOOKING_UP:  # a lookup in flight always ends with LookupDone
        box.handle(ev.LookupDone(ev.LookupOutcome.UNAVAILABLE, (), 0), now)
    if box.state is State.READING:  # so does a read
        box.handle(ev.CardReadFailed(ReadFailure.REMOVED), now)
    for _ in range(3):
        now += timedelta(seconds=61)
        box.handle(ev.Tick(), now)
    assert box.state is State.IDLE
    assert box._card is None  # nothing patient-related is left in memory


def test_the_first_published_state_carries_the_clock_and_queue_as_they_are() -> None:
    effects = Controller(MachineConfig()).start(clock_synced=False, queued=3)
    published = [e for e in effects if isinstance(e, PublishState)]
    assert [(p.clock_synced, p.queued) for p in published] == [(False, 3)]
    assert "時刻未同期" in screen_of_status(effects) and "未送信3件" in screen_of_status(effects)


def screen_of_status(effects: list[object]) -> str:
    return next(e.screen.status.text() for e in effects if isinstance(e, ShowScreen))


def _reachable_types(kind: object, seen: set[object]) -> set[object]:
    """Every type a value of `kind` can hold, through unions, containers and nested dataclasses."""
    if kind in seen:
        return seen
    seen.add(kind)
    for arg in typing.get_args(kind):
        _reachable_types(arg, seen)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        for hint in typing.get_type_hints(kind).values():
            _reachable_types(hint, seen)
    return seen


@pytest.mark.parametrize("kind", [*ev.EVENT_TYPES, *typing.get_args(Effect)], ids=lambda k: k.__name__)
def test_no_event_or_effect_carries_the_certificate(kind: type) -> None:
    """The certificate stays with the card worker (taken by read number): nothing that flows through the
    loop can hold raw bytes, so it cannot be logged, queued or kept there by mistake."""
    reachable = _reachable_types(kind, set())
    assert not reachable & {bytes, bytearray, memoryview}, kind


# -- degrade, never die: parts that fail ------------------------------------------------------------


def _published(effects: list[Effect]) -> list[PublishState]:
    return [e for e in effects if isinstance(e, PublishState)]


def test_a_failed_part_is_published_and_shown_and_comes_back() -> None:
    box = Controller(MachineConfig())
    box.start()
    effects = box.handle(ev.PartHealth(Part.BUZZER, False), at(0))
    effects += box.handle(ev.PartHealth(Part.DISPLAY, False), at(0))
    assert _published(effects)[-1].failed == (Part.DISPLAY, Part.BUZZER)
    assert box.screen.status.text().startswith("ブザー故障")  # the display cannot speak of itself
    effects = box.handle(ev.PartHealth(Part.DISPLAY, True), at(1))
    assert _published(effects)[-1].failed == (Part.BUZZER,)
    assert screen_of(effects) is ScreenKind.READY  # redrawn: a display that came back shows the screen
    effects = box.handle(ev.PartHealth(Part.BUZZER, True), at(2))
    assert _published(effects)[-1].failed == () and "故障" not in box.screen.status.text()


def test_without_buttons_the_default_consent_still_delivers() -> None:
    box = Controller(MachineConfig(default_consent=ConsentMode.ORAL_CONSENT))
    box.start()
    box.handle(ev.PartHealth(Part.BUTTONS, False), at(0))
    box.handle(ev.CardPresent(1), at(1))
    effects = box.handle(READ, at(1.2))
    assert StartDelivery(1, READ.card_hash, ConsentMode.ORAL_CONSENT) in effects


def test_without_buttons_or_a_default_a_read_is_audited_no_consent_at_once() -> None:
    box = Controller(MachineConfig())
    box.start()
    box.handle(ev.PartHealth(Part.BUTTONS, False), at(0))
    box.handle(ev.CardPresent(1), at(1))
    effects = box.handle(READ, at(1.2))
    assert RecordOutcome(Outcome.NO_CONSENT, ConsentMode.NONE, READ.card_hash) in effects
    assert screen_of(effects) is ScreenKind.NO_BUTTONS and box.state is State.NOTICE
    assert box._card is None


def test_buttons_failing_at_the_consent_prompt_end_it_at_once() -> None:
    box = Controller(MachineConfig())
    box.start()
    box.handle(ev.CardPresent(1), at(0))
    box.handle(READ, at(0.2))
    assert box.state is State.CONSENT
    effects = box.handle(ev.PartHealth(Part.BUTTONS, False), at(1))
    assert RecordOutcome(Outcome.NO_CONSENT, ConsentMode.NONE, READ.card_hash) in effects
    assert screen_of(effects) is ScreenKind.NO_BUTTONS and box._card is None
