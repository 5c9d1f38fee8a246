"""SeenIds: duplicates reported, memory bounded by count and by age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.payload.dedupe import Seen, SeenIds

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def test_duplicate_is_reported_not_raised() -> None:
    seen = SeenIds(max_count=10, max_age=timedelta(hours=1))
    assert seen.check("a" * 32, now=T0) is Seen.NEW
    assert seen.check("a" * 32, now=T0 + timedelta(minutes=59)) is Seen.DUPLICATE
    assert "a" * 32 in seen and len(seen) == 1


def test_forgotten_after_max_age() -> None:
    seen = SeenIds(max_count=10, max_age=timedelta(hours=1))
    seen.check("a", now=T0)
    seen.check("b", now=T0 + timedelta(minutes=30))
    assert seen.check("a", now=T0 + timedelta(hours=1, seconds=1)) is Seen.NEW
    assert "b" in seen


def test_bounded_by_count_oldest_first() -> None:
    seen = SeenIds(max_count=3, max_age=timedelta(days=1))
    for i in range(5):
        seen.check(str(i), now=T0)
    assert len(seen) == 3 and "0" not in seen and "1" not in seen and "4" in seen


@given(ids=st.lists(st.sampled_from("abcdefgh"), max_size=60), cap=st.integers(1, 10))
def test_never_exceeds_its_bound_and_never_forgets_the_recent(ids: list[str], cap: int) -> None:
    seen = SeenIds(max_count=cap, max_age=timedelta(days=1))
    for n, message_id in enumerate(ids):
        was_in = message_id in seen
        verdict = seen.check(message_id, now=T0 + timedelta(seconds=n))
        assert verdict is (Seen.DUPLICATE if was_in else Seen.NEW)
        assert len(seen) <= cap and message_id in seen


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SeenIds(max_count=0, max_age=timedelta(hours=1))
    with pytest.raises(ValueError):
        SeenIds(max_count=1, max_age=timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        SeenIds(max_count=1, max_age=timedelta(hours=1)).check("a", now=datetime(2026, 1, 1))
