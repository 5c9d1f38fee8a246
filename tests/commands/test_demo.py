"""`mynabox demo` (`make demo`) still runs: scripted taps through the real stack, the receiver printing
each summary."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_the_demo_taps_its_patients_and_the_receiver_prints_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "mynabox demo: 3 sealed messages opened by the gateway receiver" in out
    # The OLED at each step, drawn in the terminal.
    for screen in ("ready", "consent prompt", "result", "not a My Number Card", "stopped"):
        assert f"── OLED: {screen} " in out, screen
    # The receiver opened and printed the summaries: the warfarin patient's flag, the dialysis patient.
    assert "⚠ 注意: 抗凝固薬" in out and "透析" in out
    assert out.count("── gateway receiver ") == 3
