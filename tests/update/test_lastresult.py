"""The kept update result, read as hostile input: anything but a whole, typed document is no result."""

from __future__ import annotations

from datetime import UTC, datetime

from mynabox.update import lastresult


def test_a_result_reads_back_and_publishes_without_its_detail() -> None:
    kept = lastresult.Result(lastresult.INSTALLED, "0.3.0", datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC), "x")
    assert lastresult.parse(kept.encode()) == kept
    assert kept.published() == {"result": "installed", "version": "0.3.0", "at": "2026-12-07T01:02:03+00:00"}


def test_damaged_or_hostile_files_are_no_result() -> None:
    for text in (
        "",
        "{",
        "[]",
        "[" * 50000,
        "x" * 5000,
        '{"result": "pwned", "version": "1", "at": "2026-12-07T01:02:03+00:00"}',
        '{"result": "good", "version": 1, "at": "2026-12-07T01:02:03+00:00"}',
        '{"result": "good", "version": "1", "at": "yesterday"}',
        '{"result": "good", "version": "1", "at": "2026-12-07T01:02:03"}',  # no zone
    ):
        assert lastresult.parse(text) is None
    odd = lastresult.parse('{"result": "good", "version": "1\\u001b[2J", "at": "2026-12-07T01:02:03Z"}')
    assert odd is not None and odd.version == "1?[2J"
