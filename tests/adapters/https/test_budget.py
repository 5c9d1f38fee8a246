"""`Budget`: the time a connection's I/O may still take, nested limits keep the earlier end, and the client's
stop token ends it at once."""

from __future__ import annotations

import threading
import time

import pytest

from mynabox.adapters.https.budget import Budget


def test_nested_limits_keep_the_earlier_end_and_are_restored() -> None:
    budget = Budget(threading.Event())
    assert budget.left() is None
    now = time.monotonic()
    with budget.until(now + 10):
        with budget.until(now + 20):
            assert budget.end == now + 10
        with budget.until(now + 5):
            assert budget.end == now + 5
            with budget.suspended():
                assert budget.left() is None
            assert budget.end == now + 5
        left = budget.left()
        assert left is not None and 0 < left <= 10
    assert budget.end is None


def test_time_up_and_the_stop_token_raise_timeout() -> None:
    stopping = threading.Event()
    budget = Budget(stopping)
    with budget.until(time.monotonic() - 1), pytest.raises(TimeoutError, match="time is up"):
        budget.left()
    stopping.set()
    with pytest.raises(TimeoutError, match="closing"):
        budget.left()
