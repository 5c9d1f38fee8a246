"""The box as `mynabox run` builds it: its config passes check-config, it starts to READY, and a tap of the
JPKI test card ends in the result on the OLED (the box's own read timing line, present → result)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from mynabox.app.readtiming import parse
from mynabox.config import load_config
from mynabox_testkit.inprocess import BoxThread

from .bench import Bench, environ_with
from .cards import wait_removed
from .measure import Measurement
from .prompts import Operator

pytestmark = pytest.mark.hil


@pytest.mark.check("config: check-config accepts the box's config")
def test_check_config_passes(bench: Bench) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "check-config", "--config", str(bench.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ_with(bench),
    )
    assert out.returncode == 0, f"check-config: {out.stderr.strip() or out.stdout.strip()}"


@pytest.mark.check("config: the box points at the bench broker and summary service")
def test_the_box_points_at_the_bench_services(bench: Bench) -> None:
    """A box provisioned for a fleet must not publish its bench messages to the fleet's broker."""
    mqtt, summary = bench.config.mqtt, bench.config.summary
    if bench.rig.has("broker"):
        assert f"{mqtt.host}:{mqtt.port}" == bench.rig.bench_broker, (
            f"the box's broker is {mqtt.host}:{mqtt.port}, the bench's {bench.rig.bench_broker}: "
            "provision the box for the bench (or fix bench.broker)"
        )
    if bench.rig.has("summary"):
        assert summary.url == bench.rig.bench_summary, (
            f"the box's summary service is {summary.url}, the bench's {bench.rig.bench_summary}"
        )


class _Timings(logging.Handler):
    """The box's `read result-shown …` lines (the same ones fleet ops grep in the journal)."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[dict[str, float]] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        parsed = parse(record.getMessage())
        if parsed is not None and parsed[0] == "result-shown":
            self.shown.append(parsed[1])
            self.event.set()


@pytest.mark.needs("reader", "oled")
@pytest.mark.check("box: starts to READY, a tap ends in the result on the OLED")
def test_start_ready_and_tap_to_result(
    bench: Bench,
    operator: Operator,
    measure: Callable[[str, float], Measurement],
    proved: Callable[[str], None],
) -> None:
    timings = _Timings()
    logger = logging.getLogger("mynabox.app.readtiming")
    logger.addHandler(timings)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    box = BoxThread(load_config(bench.config_path), pin_factory=bench.pin_factory)
    try:
        started = time.monotonic()
        box.start()
        assert box.wait_ready(30), "the box did not get READY within 30 s"
        ready = measure("start_to_ready_ms", (time.monotonic() - started) * 1000)
        bench.display_view = box.parts.oled
        consent = " press 同意, then" if bench.config.consent.default == "none" else ""
        operator.tell(f"the box is running:{consent} hold {bench.rig.test_card} to the reader")
        bound = operator.timeout_s + 15
        assert timings.event.wait(bound), f"no result on the OLED within {bound:g} s of asking for the tap"
        figures = timings.shown[0]
        tap = measure("tap_to_result_ms", figures["present_to_result_ms"] - figures["consent_wait_ms"])
        proved(
            f"box: READY in {ready.value / 1000:.2f} s, a tap ends in the result on the OLED "
            f"in {tap.value / 1000:.2f} s"
        )
        operator.tell("remove the card from the reader")
        if bench.rig.virtual and bench.rig.reader_name:  # the exact vpcd name; a real rig's is a filter
            wait_removed(bench.rig.reader_name, operator.timeout_s)
    finally:
        bench.display_view = None
        logger.removeHandler(timings)
        logger.setLevel(old_level)
        box.stop()
