"""The suite's own parts without a bench: rig files, limits with their marginal band, the terminal channel."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from .measure import judge
from .prompts import NoAnswer, TtyOperator
from .rig import RigError, load_rig

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_rig_files_load() -> None:
    workshop = load_rig(ROOT / "hw/bench/rig.toml")
    assert workshop.mode == "hardware" and workshop.box_config == Path("/etc/mynabox/config.toml")
    assert not workshop.has("watchdog") and workshop.has("reader")
    virtual = load_rig(ROOT / "hw/bench/virtual.toml")
    assert virtual.virtual and virtual.faults == ()


def test_every_problem_of_a_rig_file_is_reported(tmp_path: Path) -> None:
    rig = tmp_path / "rig.toml"
    rig.write_text(
        '[rig]\nmode = "bench"\n[parts]\nbuzer = true\n[oled]\naddress = 0x3e\n'
        "[limits.card_read_ms]\nhgh = 1\n"
    )
    with pytest.raises(RigError) as err:
        load_rig(rig)
    for problem in (
        "rig.mode",
        "rig.technician",
        "parts.buzer: unknown key",
        "oled.address",
        "limits.card_read_ms",
    ):
        assert problem in str(err.value)


def test_limits_and_the_marginal_band() -> None:
    assert judge("card_read_ms", 100, "t").outcome == "pass"
    assert judge("card_read_ms", 700, "t").outcome == "marginal"
    assert judge("card_read_ms", 1001, "t").outcome == "fail"
    assert (
        judge("apdus_per_read", 7, "t").outcome == "pass"
        and judge("apdus_per_read", 8, "t").outcome == "marginal"
    )
    assert judge("apdus_per_read", 0, "t").outcome == "fail"
    tight = {"card_read_ms": {"high": 50.0, "marginal_high": 40.0}}
    assert judge("card_read_ms", 45, "t", tight).outcome == "marginal"
    assert judge("card_read_ms", 60, "t", tight).outcome == "fail"


def test_the_terminal_channel_answers_and_times_out() -> None:
    master, slave = os.openpty()
    operator = TtyOperator("T-1", 0.5, tty=os.ttyname(slave))
    try:
        os.write(master, b"early\n")  # typed before the question: must not answer it
        started = time.monotonic()
        with pytest.raises(NoAnswer, match=r"no answer from technician T-1 within 0\.5 s"):
            operator.ask("is the LED on?")
        assert 0.4 < time.monotonic() - started < 3
        threading.Timer(0.3, os.write, (master, b"y\n")).start()
        assert operator.ask("is the LED off?", timeout_s=5) == "y"
        first, second = operator.answers
        assert first.answer is None and first.answered_at is None and first.technician == "T-1"
        assert second.answer == "y" and second.answered_at and second.prompt == "is the LED off?"
    finally:
        operator.close()
        os.close(master)
        os.close(slave)


def test_no_terminal_is_a_clear_failure() -> None:
    operator = TtyOperator("T-1", 0.5, tty="/nonexistent/tty")
    with pytest.raises(NoAnswer, match="no terminal"):
        operator.ask("press 同意")


def test_the_suite_refuses_to_send_verify() -> None:
    from mynabox_testkit.mynacard import VirtualMyNumberCard
    from support.fakecard import FakeCardTransport

    from .cards import RecordingTransport

    card = VirtualMyNumberCard("HILUNITCARD")
    fake = FakeCardTransport(card)
    fake.reader_name = "fake"  # type: ignore[attr-defined]
    transport = RecordingTransport(fake)
    assert transport.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))[-2:] == b"\x90\x00"
    with pytest.raises(AssertionError, match="VERIFY"):
        transport.transmit(bytes.fromhex("002000980431323334"))
    assert transport.instructions == [0xA4, 0x20]
    assert len(card.log) == 1  # the PIN never reached the card
