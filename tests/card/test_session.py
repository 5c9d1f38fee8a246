"""Driving a session generator against a transport."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from mynabox.card.errors import CardRemoved
from mynabox.card.session import run


class Echo:
    """A transport that answers each command with itself + 9000, or fails at the n-th."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.seen: list[bytes] = []

    def transmit(self, command: bytes) -> bytes:
        self.seen.append(command)
        if self.fail_at is not None and len(self.seen) >= self.fail_at:
            raise CardRemoved("gone")
        return command + b"\x90\x00"


class Session:
    """Two exchanges; records whether its cleanup ran."""

    def __init__(self) -> None:
        self.closed = False

    def __call__(self) -> Generator[bytes, bytes, list[bytes]]:
        try:
            first = yield b"\x01"
            second = yield b"\x02"
            return [first, second]
        finally:
            self.closed = True


def test_run_drives_the_session() -> None:
    transport = Echo()
    session = Session()
    assert run(session(), transport) == [b"\x01\x90\x00", b"\x02\x90\x00"]
    assert transport.seen == [b"\x01", b"\x02"]
    assert session.closed


def test_run_propagates_transport_errors_and_closes_the_session() -> None:
    session = Session()
    with pytest.raises(CardRemoved):
        run(session(), Echo(fail_at=2))
    assert session.closed


def test_a_session_with_no_commands() -> None:
    def nothing() -> Generator[bytes, bytes, str]:
        return "done"
        yield b""  # a generator that never yields

    transport = Echo()
    assert run(nothing(), transport) == "done"
    assert transport.seen == []
