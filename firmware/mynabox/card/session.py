"""Drive a card session generator against a transport."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

from mynabox.card.transport import Transport

T = TypeVar("T")


def run(session: Generator[bytes, bytes, T], transport: Transport) -> T:
    """Send each command the session yields, feed back the response, return the session's result.

    Transport errors propagate; the session is closed so its cleanup runs.
    """
    try:
        command = next(session)
        while True:
            command = session.send(transport.transmit(command))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        session.close()
