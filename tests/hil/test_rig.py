"""The suite's own parts without a bench: rig files, limits with their marginal band, the terminal channel."""

from __future__ import annotations

import os
import subprocess
import sys
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
    emulated = load_rig(ROOT / "hw/bench/emulated.toml")
    assert emulated.mode == "hardware" and emulated.has("buttons") and not emulated.has("oled")


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


VALID = '[rig]\nmode = "virtual"\ntechnician = "T-1"\n'


HOSTILE_RIGS = [
    ("rig = 5\n", "rig: must be a table"),
    (VALID + '[oled]\nport = "one"\n', "oled.port: expected the I2C bus number"),
    (VALID + "[oled]\nport = inf\n", "oled.port"),
    (VALID + "[oled]\nport = nan\n", "oled.port"),
    (VALID + "[oled]\nport = 1e300\n", "oled.port"),
    (VALID + "[oled]\nport = 99999999999999999999\n", "oled.port"),
    ("limits = 3\n" + VALID, "limits: must be a table"),
    (VALID + "[limits]\ncard_read_ms = 3\n", "limits.card_read_ms: expected a table"),
    (VALID + "[limits.card_read_ms]\nhigh = inf\n", "limits.card_read_ms: expected a table"),
    (VALID + "[limits.card_read_ms]\nlow = 9\nhigh = 1\n", "limits.card_read_ms: low is above high"),
    (VALID + "[limits.card_read_msec]\nhigh = 1\n", "limits.card_read_msec: no such measurement"),
    (VALID + "[oled]\naddress = true\n", "oled.address"),
    (VALID + "[oled]\naddress = 60.0\n", "oled.address"),
    (VALID + "[operator]\ntimeout_s = nan\n", "operator.timeout_s"),
    (VALID + "[reader]\nread_timeout_s = inf\n", "reader.read_timeout_s"),
    ("parts = 5\n" + VALID, "parts: must be a table"),
    (VALID + "[parts]\nreader = 1\n", "parts.reader"),
    (VALID + "[virtual]\nfaults = [[1], {a = 1}]\n", "virtual.faults"),
    (VALID + '[virtual]\nfaults = "dead-led"\n', "virtual.faults"),
    (VALID + '[virtual]\ndevice_id = "../amb"\n', "virtual.device_id"),
    (VALID + '[pins]\nfile = "pins\\u0000.toml"\n', "pins.file: expected one line"),
    (VALID + '[box]\nconfig = ["a"]\n', "box.config: expected a string, not a list"),
    (VALID + '[bench]\nbroker = "host"\n', "bench.broker"),
    (VALID + "[reader]\nname = 2026-01-01\n", "reader.name: expected a string"),
    ('rig = "x"\n[rig.y]\n', "not TOML"),
    ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "not TOML"),
    ("x = " + "9" * 5000 + "\n", "not TOML"),
    ('"\\u0000" = 1\n' + VALID, "unknown section [\\x00]"),
]


@pytest.mark.parametrize(("text", "reason"), HOSTILE_RIGS, ids=[r for _, r in HOSTILE_RIGS])
def test_a_hostile_rig_file_is_refused_with_its_reason(tmp_path: Path, text: str, reason: str) -> None:
    """Issue 23 item 11: each of these ended as an exception other than RigError (pytest INTERNALERROR)."""
    rig = tmp_path / "rig.toml"
    rig.write_text(text, encoding="utf-8")
    with pytest.raises(RigError) as err:
        load_rig(rig)
    assert reason in str(err.value)


def test_a_rig_file_that_is_not_a_file_or_not_utf8_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(RigError, match="not a regular file"):
        load_rig(fifo)  # would block in read_text
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'[rig]\nname = "\xff"\n')
    with pytest.raises(RigError, match="not UTF-8"):
        load_rig(binary)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (300 * 1024))
    with pytest.raises(RigError, match="larger than"):
        load_rig(big)


def test_make_hil_refuses_a_bad_rig_file_before_pytest_with_every_reason(tmp_path: Path) -> None:
    """The run itself: exit 2 with each problem named, no pytest start (no INTERNALERROR), no report."""
    rig = tmp_path / "rig.toml"
    rig.write_text('rig = 5\nlimits = 3\n[oled]\nport = "one"\naddress = inf\n', encoding="utf-8")
    reports = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYNABOX_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/hil.py"), "--rig", str(rig), "--reports", str(reports)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    for reason in ("rig: must be a table", "limits: must be a table", "oled.port", "oled.address"):
        assert reason in done.stderr
    assert "INTERNALERROR" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not reports.exists()


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
