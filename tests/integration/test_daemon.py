"""`mynabox run` as a real subprocess on the real stack, with a NOTIFY_SOCKET the test owns.

READY arrives, WATCHDOG keeps coming, a tap ends in the gateway receiver opening the summary, a frozen
process stops pinging, SIGTERM exits 0 quickly (also while the broker link swallows packets); kill -9 with
the broker down loses nothing.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.app.readtiming import parse
from mynabox.core import screens
from mynabox.core.screens import Screen
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.render.draw import render
from mynabox.vocab import Outcome
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.daemon import start_daemon, summaries, tap
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack() -> Iterator[BoxStack]:
    config = {"reader": {"hang_s": 3}}  # a read takes < 1 s; the hung-reader test waits this long
    with BoxStack(device_id="amb-test", consent_default="oral", config_extra=config) as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


def read_timings(log: Path) -> dict[str, dict[str, float]]:
    return dict(p for line in log.read_text().splitlines() if (p := parse(line)) is not None)


def test_lifecycle_ready_watchdog_tap_freeze_and_sigterm(
    stack: BoxStack, received: list[Opened], tmp_path: Path
) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        ready_after = time.monotonic() - started
        t = time.monotonic()
        assert wait_for(lambda: notify.seen("WATCHDOG=1", since=t) >= 3, 5)  # every ~0.5 s

        card = tap(stack, "warfarin-elderly")
        try:
            assert wait_for(lambda: len(summaries(received)) == 1, 20), log.read_text()
        finally:
            card.remove()
        opened = summaries(received)[0]
        assert opened.device_id == "amb-test" and opened.kind is Kind.SUMMARY
        assert "summary" in opened.body
        assert wait_for(lambda: any(o.kind is Kind.AUDIT for o in received), 10)
        # Where the read's time went, from the daemon's own log: result on screen, then the PUBACK.
        both = {"delivered", "result-shown"}  # the PUBACK's line may come before the screen's
        assert wait_for(lambda: both <= read_timings(log).keys(), 10), log.read_text()
        shown, delivered = read_timings(log)["result-shown"], read_timings(log)["delivered"]
        for figures in (shown, delivered):  # the PUBACK may come before or after the screen is drawn
            total = figures.get("present_to_result_ms", figures.get("present_to_puback_ms", 0))
            assert 0 < figures["card_ms"] + figures["lookup_ms"] < total
        assert delivered["lookup_ms"] > 0 and delivered["consent_wait_ms"] == 0  # default consent
        parts = delivered["card_ms"] + delivered["lookup_ms"] + delivered["overhead_ms"]
        assert delivered["overhead_ms"] > 0
        assert parts == pytest.approx(delivered["present_to_puback_ms"], abs=0.25)  # each rounded to 0.1

        # A frozen process (as a hung loop would be) stops pinging: systemd's watchdog would restart it.
        daemon.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        time.sleep(2.0)
        assert notify.seen("WATCHDOG=1", since=frozen + 0.1) == 0
        daemon.send_signal(signal.SIGCONT)
        thawed = time.monotonic()
        assert wait_for(lambda: notify.seen("WATCHDOG=1", since=thawed) >= 1, 5)

        term = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=5) == 0
        stop_s = time.monotonic() - term
        assert stop_s < 2.0, f"SIGTERM took {stop_s:.2f} s"
        assert notify.seen("STOPPING=1") == 1
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
    print(f"start_to_ready {ready_after * 1000:.0f} ms, sigterm_to_exit {stop_s * 1000:.0f} ms")
    # The stopped screen was the last frame; no patient data in the log or anything the box wrote.
    assert (stack.frames_dir / "current.png").is_file()
    p = patient("warfarin-elderly")
    markers = [p.card_id.encode(), "ワルファリン".encode(), "鈴木".encode()]
    for path in [log, *stack.state_dir.rglob("*"), *stack.frames_dir.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(m in data for m in markers), f"{path.name} holds patient data"


def _shows(frames_dir: Path, screen: Screen) -> bool:
    """Some frame the daemon drew is `screen` (above the status line, whose link/queue/clock vary)."""
    want = render(screen).convert("1").crop((0, 0, 128, 54)).tobytes()
    for frame in sorted(frames_dir.glob("frame-*.png")):
        try:
            with Image.open(frame) as image:
                if image.convert("1").crop((0, 0, 128, 54)).tobytes() == want:
                    return True
        except OSError:  # being written
            continue
    return False


@pytest.mark.parametrize(
    "faults", [Faults(silent_after=0), Faults(latency_s=600)], ids=["silent-after-atr", "10-min-per-apdu"]
)
def test_a_card_that_stops_answering_gets_a_notice_and_an_audit_record_without_a_restart(
    stack: BoxStack, received: list[Opened], tmp_path: Path, faults: Faults
) -> None:
    """The card worker sat in SCardTransmit for good (vpcd never times out an APDU), the crew watched 読取中
    until the watchdog restart, and the read left no audit record. Now the read ends at its limit
    (reader.hang_s / 2 = 1.5 s here): notice on the OLED, `card-unresponsive` in the audit log, pings go on,
    and once the card is taken away the next one is read and delivered by the same process."""
    assert stack.pcscd is not None
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    for old in stack.frames_dir.glob("frame-*.png"):
        old.unlink()
    audit = AuditLog(stack.state_dir / "audit.jsonl", key=load_audit_key(stack.credentials_dir / "audit-key"))
    unresponsive_before = sum(e.record.outcome is Outcome.CARD_UNRESPONSIVE for e in audit.entries())
    before = len(summaries(received))
    daemon = start_daemon(stack, notify, log)
    card: VpcdCardServer | None = None
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        stack.pcscd.wait_empty()
        silent = VirtualMyNumberCard(patient("healthy").card_id, faults=faults)
        card = VpcdCardServer(silent, port=stack.pcscd.vpcd_port).start()
        tapped = time.monotonic()
        notice = screens.card_unresponsive(screens.Status())
        assert wait_for(lambda: _shows(stack.frames_dir, notice), 8), log.read_text()
        assert time.monotonic() - tapped < 6.0
        assert wait_for(
            lambda: (
                sum(e.record.outcome is Outcome.CARD_UNRESPONSIVE for e in audit.entries())
                == unresponsive_before + 1
            ),
            5,
        ), log.read_text()
        assert silent.apdu_count == 1  # the SELECT that was never answered
        shown = time.monotonic()  # pings go on (a stuck worker withholds them after reader.hang_s = 3 s)
        assert wait_for(lambda: notify.seen("WATCHDOG=1", since=shown) >= 3, 6), log.read_text()
        assert notify.seen("STATUS=hung: card read") == 0
        card.remove()  # taken away, as the notice says; the abandoned exchange returns and cleans up
        card = tap(stack, "healthy")
        assert wait_for(lambda: len(summaries(received)) == before + 1, 20), log.read_text()
        assert daemon.poll() is None and notify.seen("READY=1") == 1  # the same process, no restart
        assert "abandoned at its deadline returned" in log.read_text()
    finally:
        if card is not None:
            card.remove()
        daemon.kill()
        daemon.wait(timeout=10)
        notify.close()


def test_kill_9_with_the_broker_down_loses_nothing(
    stack: BoxStack, received: list[Opened], tmp_path: Path
) -> None:
    assert stack.broker is not None
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    before = len(summaries(received))
    audits_before = sum(o.kind is Kind.AUDIT for o in received)
    stack.broker.stop()
    daemon = start_daemon(stack, notify, log)
    keys = ("dialysis", "recent-surgery", "insulin-diabetic")
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        for key in keys:
            card = tap(stack, key)
            time.sleep(1.5)  # read, consent (default), lookup, seal, queue
            card.remove()
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=5)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    stack.broker.start()
    daemon = start_daemon(stack, notify, log)  # the outbox survives the kill and drains on restart
    try:
        assert wait_for(lambda: len(summaries(received)) - before == len(keys), 30), log.read_text()
        time.sleep(1.0)
        assert len(summaries(received)) - before == len(keys)  # exactly once each
        # A read after the restart is numbered after everything before the kill (the gateway's replay rule
        # would refuse a reused number): the sequence lives in the outbox on the state partition.
        audits = lambda: sum(o.kind is Kind.AUDIT for o in received) - audits_before  # noqa: E731
        assert wait_for(lambda: audits() >= len(keys), 30)
        numbered_before = max(o.seq for o in received)  # the audit record of this read comes after it
        card = tap(stack, "warfarin-elderly")
        assert wait_for(lambda: len(summaries(received)) - before == len(keys) + 1, 30), log.read_text()
        card.remove()
        last = summaries(received)[-1]
        assert last.seq > numbered_before
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=5) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()


class SilentBroker:
    """A loopback port whose accept queue is full, so the kernel drops every SYN: a broker link that swallows
    packets, as in an underground car park. paho's thread then sits in its TCP connect."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._fillers: list[socket.socket] = []
        for _ in range(2):  # never accepted: they fill the queue
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)

    def close(self) -> None:
        for s in [*self._fillers, self._listener]:
            s.close()


def test_sigterm_is_quick_while_the_broker_link_swallows_packets(tmp_path: Path) -> None:
    silent = SilentBroker()
    try:
        config = {"mqtt": {"port": silent.port}}
        # No pcscd of its own (the module's stack has the one this process may run): reader missing is fine.
        with BoxStack(device_id="amb-silent", with_pcscd=False, config_extra=config) as quiet:
            notify = NotifySocket(tmp_path / "notify.sock")
            log = tmp_path / "daemon.log"
            daemon = start_daemon(quiet, notify, log)
            try:
                assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
                time.sleep(1.5)  # paho's thread is inside its connect (connect_timeout_s: 10 s)
                term = time.monotonic()
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=15) == 0
                stop_s = time.monotonic() - term
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                notify.close()
    finally:
        silent.close()
    assert stop_s < 2.0, f"SIGTERM took {stop_s:.2f} s"  # 7 s before: systemd (TimeoutStopSec=5) would kill
    assert "still being attempted" in log.read_text()  # the connect really was under way
