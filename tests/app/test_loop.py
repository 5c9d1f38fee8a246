"""The decision loop on its own: the real controller, a real sd_notify socket, a fake clock driving the
watchdog and housekeeping timers through `step`, and workers whose one job never ends."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from mynabox.adapters.systemd import Notifier
from mynabox.app.loop import (
    HOUSEKEEPING_S,
    PURGE_EVERY_S,
    RETRY_S,
    TICK_S,
    UPDATE_POLL_S,
    ClockWatch,
    Loop,
    Watched,
)
from mynabox.core.effects import Effect, PublishState, SetLed, ShowScreen
from mynabox.core.events import (
    ClockSync,
    ConsentPressed,
    Event,
    LookupDone,
    LookupOutcome,
    QueueDepth,
    ShutdownRequested,
    Tick,
    UpdatePending,
)
from mynabox.core.machine import Controller, MachineConfig
from mynabox.vocab import ConsentMode, Part

T0 = 10_000.0  # monotonic seconds at the start: past PURGE_EVERY_S, as on a box up for hours


class Systemd:
    """The other end of NOTIFY_SOCKET, in the abstract namespace."""

    def __init__(self) -> None:
        self.address = f"@mynabox-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.address[1:].encode())
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        """Every datagram since the last call, one string each."""
        got = []
        while True:
            try:
                got.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return got


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    listener = Systemd()
    try:
        yield listener
    finally:
        listener.sock.close()


@dataclass
class Rig:
    """What the loop is wired to in the daemon, with the clock and the workers in the test's hands."""

    systemd: Systemd
    t: float = T0
    wall: datetime = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    synced: bool = True
    depth: int = 0
    card_busy_s: float = 0.0
    delivery_busy_s: float = 0.0
    idles: int = 0
    idle_broken: bool = False
    purges: int = 0
    retries: int = 0
    retry_broken: bool = False
    failed: tuple[Part, ...] = ()
    applied: list[tuple[Effect, float | None]] = field(default_factory=list)
    display_broken: bool = False
    update_pending: bool = False
    events: queue.Queue[Event] = field(default_factory=queue.Queue)

    def loop(self, *, watchdog_usec: int | None = 2_000_000) -> Loop:
        return Loop(
            Controller(MachineConfig()),
            self.events,
            apply=self._apply,
            notifier=Notifier(self.systemd.address, watchdog_usec=watchdog_usec),
            clock=ClockWatch(lambda: self.synced),
            depth=lambda: self.depth,
            purge=self._purge,
            watched=(
                Watched("card read", lambda now: self.card_busy_s, 20.0),
                Watched("delivery", lambda now: self.delivery_busy_s, 60.0),
            ),
            retry=self._retry,
            failed=lambda: self.failed,
            update_pending=lambda: self.update_pending,
            idle=self._idle,
            monotonic=lambda: self.t,
            now=lambda: self.wall,
        )

    def _apply(self, effect: Effect, consent_at: float | None) -> None:
        if self.display_broken:
            raise OSError("i2c bus gone")
        self.applied.append((effect, consent_at))

    def _purge(self) -> None:
        self.purges += 1

    def _idle(self) -> None:
        self.idles += 1
        if self.idle_broken:
            raise OSError("libc said no")

    def _retry(self) -> None:
        self.retries += 1
        if self.retry_broken:
            raise RuntimeError("a part's library raised past its keeper")

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.wall += timedelta(seconds=seconds)

    def posted(self) -> list[Event]:
        got = []
        while not self.events.empty():
            got.append(self.events.get_nowait())
        return got


@pytest.fixture
def rig(systemd: Systemd) -> Rig:
    return Rig(systemd)


def test_the_watchdog_is_pinged_once_per_interval(rig: Rig) -> None:
    loop = rig.loop(watchdog_usec=2_000_000)  # WatchdogSec=2: a ping every second
    for _ in range(10):
        rig.advance(0.25)
        loop.step(Tick())
    assert rig.systemd.messages() == ["WATCHDOG=1"] * 2


def test_without_a_watchdog_nothing_is_pinged(rig: Rig) -> None:
    loop = rig.loop(watchdog_usec=None)
    for _ in range(5):
        rig.advance(1.0)
        loop.step(Tick())
    assert rig.systemd.messages() == []


def test_a_hung_worker_stops_the_pings_once_and_they_resume_when_it_recovers(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    loop = rig.loop()
    rig.advance(1.0)
    loop.step(Tick())
    assert rig.systemd.messages() == ["WATCHDOG=1"]
    rig.card_busy_s = 25.0  # past its 20 s limit
    for _ in range(5):
        rig.advance(1.0)
        loop.step(Tick())
    assert rig.systemd.messages() == ["STATUS=hung: card read"]  # said once, and no pings
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "card read under way for 25 s: no watchdog pings, systemd restarts the box"
    ]
    rig.card_busy_s = 0.0
    rig.advance(1.0)
    loop.step(Tick())
    assert rig.systemd.messages() == ["WATCHDOG=1"]
    assert "the hung worker recovered: watchdog pings resume" in caplog.text


def test_housekeeping_posts_what_changed_once_a_second(rig: Rig) -> None:
    loop = rig.loop()
    rig.advance(HOUSEKEEPING_S / 2)
    loop.step(Tick())
    assert rig.posted() == []  # not due yet
    rig.advance(HOUSEKEEPING_S / 2)
    loop.step(Tick())
    assert rig.posted() == [QueueDepth(0)]  # the first depth is always told
    rig.advance(HOUSEKEEPING_S)
    loop.step(Tick())
    assert rig.posted() == []  # nothing changed
    rig.depth, rig.synced = 3, False
    rig.advance(HOUSEKEEPING_S)
    loop.step(Tick())
    assert rig.posted() == [ClockSync(False), QueueDepth(3)]


def test_a_depth_that_came_back_to_zero_after_a_lookup_is_told(rig: Rig) -> None:
    """LookupDone told the controller 2 queued; both were delivered before housekeeping looked (0 -> 2 -> 0
    between two looks): the controller must hear 0, or its status line and the update's switch wait."""
    loop = rig.loop()
    rig.advance(HOUSEKEEPING_S)
    loop.step(Tick())
    assert rig.posted() == [QueueDepth(0)]
    loop.step(LookupDone(LookupOutcome.UNAVAILABLE, (), 2))
    rig.advance(HOUSEKEEPING_S)
    loop.step(Tick())
    assert rig.posted() == [QueueDepth(0)]


def test_an_installed_update_is_told_once(rig: Rig) -> None:
    loop = rig.loop()
    rig.advance(HOUSEKEEPING_S)
    loop.step(Tick())
    assert UpdatePending() not in rig.posted()
    rig.update_pending = True
    for _ in range(int(UPDATE_POLL_S / HOUSEKEEPING_S) + 1):
        rig.advance(HOUSEKEEPING_S)
        loop.step(Tick())
    rig.advance(UPDATE_POLL_S * 3)
    loop.step(Tick())
    assert [e for e in rig.posted() if isinstance(e, UpdatePending)] == [UpdatePending()]


def test_the_outbox_is_purged_at_the_first_housekeeping_then_hourly(rig: Rig) -> None:
    loop = rig.loop()
    for _ in range(3):
        rig.advance(HOUSEKEEPING_S)
        loop.step(Tick())
    assert rig.purges == 1
    rig.advance(PURGE_EVERY_S - 3 * HOUSEKEEPING_S)
    loop.step(Tick())
    assert rig.purges == 1  # an hour after the first, less the steps between
    rig.advance(3 * HOUSEKEEPING_S)
    loop.step(Tick())
    assert rig.purges == 2


def test_effects_of_a_consent_press_carry_when_it_was_pressed(rig: Rig) -> None:
    loop = rig.loop()
    loop.step(ConsentPressed(ConsentMode.ORAL_CONSENT))
    loop.step(Tick())
    pressed = [at for _, at in rig.applied]
    assert pressed and set(pressed) == {T0}
    rig.applied.clear()
    rig.advance(40.0)  # past consent_window_s: the ready screen drops the waiting press
    loop.step(Tick())
    assert rig.applied and {at for _, at in rig.applied} == {None}


def test_the_loop_wakes_at_a_state_deadline_sooner_than_its_tick(rig: Rig) -> None:
    loop = rig.loop()
    loop.step(ConsentPressed(ConsentMode.ORAL_CONSENT))  # the press expires after consent_window_s
    assert loop.controller.deadline is not None
    rig.wall = loop.controller.deadline - timedelta(seconds=0.05)
    started = time.monotonic()
    assert loop.next_event() == Tick()
    assert time.monotonic() - started < TICK_S / 2


def test_run_starts_tells_ready_and_stops_with_the_real_queue_depth(rig: Rig) -> None:
    rig.depth = 2
    loop = rig.loop(watchdog_usec=None)
    ready = threading.Event()
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(loop.run("ready: test", ready.set)), daemon=True)
    runner.start()
    assert ready.wait(5)
    assert rig.systemd.messages() == ["READY=1\nSTATUS=ready: test"]
    first = [e for e, _ in rig.applied]
    assert isinstance(first[0], ShowScreen) and SetLed in map(type, first)
    assert [e.queued for e in first if isinstance(e, PublishState)] == [2]
    rig.applied.clear()
    rig.depth = 0  # delivered meanwhile: the last retained state must say so, not the 2 it last saw
    rig.events.put(ShutdownRequested())
    runner.join(5)
    assert codes == [0]
    assert [e.queued for e, _ in rig.applied if isinstance(e, PublishState)][-1] == 0


def test_a_failing_effect_is_logged_and_the_decisions_go_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    loop = rig.loop()
    rig.display_broken = True  # every effect fails to apply
    assert loop.step(ConsentPressed(ConsentMode.ORAL_CONSENT)) is False
    assert "applying ShowScreen failed" in caplog.text
    assert loop.step(ShutdownRequested()) is True  # Stop still comes through


def test_the_parts_are_retried_every_retry_s_and_a_failing_retry_stops_nothing(rig: Rig) -> None:
    loop = rig.loop(watchdog_usec=None)  # no pings: nobody reads the socket here
    for _ in range(int(RETRY_S * 4)):  # 20 s in 1 s steps
        rig.advance(1.0)
        loop.step(Tick())
    assert rig.retries == 4
    rig.retry_broken = True
    for _ in range(int(RETRY_S * 2)):
        rig.advance(1.0)
        assert not loop.step(Tick())
    assert rig.retries == 6


def test_the_first_state_names_the_parts_that_failed_to_start(rig: Rig) -> None:
    rig.failed = (Part.BUZZER, Part.DISPLAY)
    loop = rig.loop()
    loop.events.put(ShutdownRequested())
    loop.run("ready")
    first = next(e for e, _ in rig.applied if isinstance(e, PublishState))
    assert first.failed == (Part.DISPLAY, Part.BUZZER)  # in the vocabulary's order


def test_the_idle_hook_runs_once_after_each_read_when_no_worker_has_a_job(rig: Rig) -> None:
    """After a read's LookupDone, the first step with both workers idle hands the C heap's free pages back
    (wiring: adapters.heap); never without a read, never while a card or a delivery is under way."""
    loop = rig.loop(watchdog_usec=None)
    for _ in range(3):
        rig.advance(1.0)
        loop.step(Tick())
    assert rig.idles == 0  # no read yet
    rig.delivery_busy_s = 0.01  # the worker posts LookupDone just before its job ends
    loop.step(LookupDone(LookupOutcome.UNAVAILABLE, (), 0))
    assert rig.idles == 0
    rig.delivery_busy_s, rig.card_busy_s = 0.0, 0.2  # the next card is being read
    loop.step(Tick())
    assert rig.idles == 0
    rig.card_busy_s = 0.0
    loop.step(Tick())
    assert rig.idles == 1
    for _ in range(3):
        rig.advance(1.0)
        loop.step(Tick())
    assert rig.idles == 1  # once per read, not at every tick
    loop.step(LookupDone(LookupOutcome.UNAVAILABLE, (), 0))
    assert rig.idles == 2


def test_a_failing_idle_hook_is_logged_and_the_decisions_go_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.idle_broken = True
    loop = rig.loop(watchdog_usec=None)
    assert loop.step(LookupDone(LookupOutcome.UNAVAILABLE, (), 0)) is False
    assert rig.idles == 1 and "the idle hook failed" in caplog.text
    assert loop.step(ShutdownRequested()) is True


def test_the_idle_hook_runs_once_after_start_up(rig: Rig) -> None:
    loop = rig.loop(watchdog_usec=None)
    rig.events.put(Tick())
    rig.events.put(Tick())
    rig.events.put(ShutdownRequested())
    assert loop.run("ready") == 0
    assert rig.idles == 1
