"""Read timings: the milestones' log lines, the overhead arithmetic, the bound on pending reads, parsing."""

from __future__ import annotations

import logging

import pytest

from mynabox.app.readtiming import MAX_PENDING, ReadTiming, ReadTimings, overhead_ms, parse


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, float]]]:
    return [p for r in caplog.records if (p := parse(r.getMessage())) is not None]


def test_result_and_puback_lines_split_the_time(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    timings = ReadTimings(clock)
    timing = ReadTiming(present_at=100.0, card_ms=40.0, lookup_ms=5.0, consent_wait_ms=200.0)
    clock.now = 100.26
    timings.queued("m1", timing)
    with caplog.at_level(logging.INFO, "mynabox.app.readtiming"):
        timings.result_shown()
        clock.now = 100.3
        timings.acked("m1")
    (shown, shown_figures), (delivered, figures) = lines(caplog)
    assert shown == "result-shown" and shown_figures["present_to_result_ms"] == pytest.approx(260.0)
    assert delivered == "delivered"
    assert figures["present_to_puback_ms"] == pytest.approx(300.0)
    assert figures["overhead_ms"] == pytest.approx(300.0 - 40.0 - 5.0 - 200.0)
    assert figures["card_ms"] == 40.0 and figures["lookup_ms"] == 5.0


def test_a_result_is_logged_once_and_an_unknown_puback_not_at_all(caplog: pytest.LogCaptureFixture) -> None:
    timings = ReadTimings(Clock())
    timings.queued("m1", ReadTiming(100.0, 1.0, 1.0, 0.0))
    with caplog.at_level(logging.INFO, "mynabox.app.readtiming"):
        timings.result_shown()
        timings.result_shown()
        timings.acked("audit-message")
        timings.acked("m1")
        timings.acked("m1")
    assert [m for m, _ in lines(caplog)] == ["result-shown", "delivered"]


def test_pending_reads_are_bounded_oldest_first(caplog: pytest.LogCaptureFixture) -> None:
    timings = ReadTimings(Clock())
    for i in range(MAX_PENDING + 5):
        timings.queued(f"m{i}", ReadTiming(100.0, 1.0, 1.0, 0.0))
    with caplog.at_level(logging.INFO, "mynabox.app.readtiming"):
        for i in range(MAX_PENDING + 5):
            timings.acked(f"m{i}")
    assert len(lines(caplog)) == MAX_PENDING


def test_overhead_is_what_is_left() -> None:
    assert overhead_ms(ReadTiming(10.0, 30.0, 20.0, 0.0), 10.1) == pytest.approx(50.0)


@pytest.mark.parametrize(
    "line",
    [
        "INFO mynabox.app.readtiming: read delivered present_to_puback_ms=1.0 overhead_ms=x",
        "INFO mynabox.app.cardread: card read: 3 APDUs",
        "read started present_ms=1.0",
        "",
    ],
)
def test_parse_ignores_other_lines(line: str) -> None:
    assert parse(line) is None


def test_parse_reads_a_journal_line_with_any_prefix() -> None:
    line = "mynabox[42]: INFO mynabox.app.readtiming: read result-shown present_to_result_ms=12.5 card_ms=3.0"
    assert parse(line) == ("result-shown", {"present_to_result_ms": 12.5, "card_ms": 3.0})


def test_a_puback_before_the_worker_is_back_still_times_the_read(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    timings = ReadTimings(clock)
    clock.now = 100.05
    with caplog.at_level(logging.INFO, "mynabox.app.readtiming"):
        timings.acked("m1")  # the link thread is quicker than the delivery worker's return
        clock.now = 100.2
        timings.queued("m1", ReadTiming(100.0, 10.0, 5.0, 0.0))
    ((milestone, figures),) = lines(caplog)
    assert milestone == "delivered" and figures["present_to_puback_ms"] == pytest.approx(50.0)
    assert figures["overhead_ms"] == pytest.approx(35.0)
