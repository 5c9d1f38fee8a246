"""The clock adapter asks the kernel (adjtimex) through the process's own libc, resolved once."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from mynabox.adapters import clock


def kernel_answer() -> bool:
    """The same question through libc found the long way (ld.so.cache), independent of the adapter."""
    name = ctypes.util.find_library("c")
    assert name is not None
    timex = ctypes.create_string_buffer(512)
    return int(ctypes.CDLL(name).adjtimex(timex)) not in (-1, clock.TIME_ERROR)


def test_clock_synced_gives_the_kernels_answer_and_resolves_libc_once() -> None:
    clock._adjtimex.cache_clear()
    answers = {clock.clock_synced() for _ in range(20)}
    assert answers == {kernel_answer()}
    assert clock._adjtimex.cache_info().misses == 1


def test_without_adjtimex_the_clock_counts_as_not_synced(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoAdjtimex:  # a libc without the call (not glibc or musl)
        def __init__(self, name: object, use_errno: bool = False) -> None:
            pass

    clock._adjtimex.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", NoAdjtimex)
    try:
        assert clock.clock_synced() is False
    finally:
        clock._adjtimex.cache_clear()
