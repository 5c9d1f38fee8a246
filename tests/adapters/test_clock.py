"""The clock adapter asks the kernel (adjtimex) and resolves libc once: the daemon asks every second."""

from __future__ import annotations

import ctypes.util

import pytest

from mynabox.adapters import clock


def test_clock_synced_answers_with_a_bool_and_finds_libc_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    real = ctypes.util.find_library

    def counting(name: str) -> str | None:
        lookups.append(name)
        return real(name)

    clock._libc.cache_clear()
    monkeypatch.setattr(ctypes.util, "find_library", counting)
    answers = {clock.clock_synced() for _ in range(20)}
    assert answers <= {True, False} and len(answers) == 1
    assert lookups == ["c"]


def test_without_libc_the_clock_counts_as_not_synced(monkeypatch: pytest.MonkeyPatch) -> None:
    clock._libc.cache_clear()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    try:
        assert clock.clock_synced() is False
    finally:
        clock._libc.cache_clear()
