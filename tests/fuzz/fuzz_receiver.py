"""Fuzz target: the gateway receiver's decision (gateway.core.ReceiverCore) and its operator rendering.

Input: a mode byte, the topic (u16-length-prefixed, UTF-8 with replacement as paho hands it over), then
either raw payload bytes or (mode bit 0) a JSON body that is sealed for real by the fixed device key as the
kind the mode picks - so decisions past the opener (device vs topic, kind vs topic, duplicates, the
rendering of whatever the body holds) are reached. A message may end only in a verdict; nothing may raise.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from fuzzkeys import NOW, opener, sealer
from harness import Reader, main


def setup() -> Callable[[bytes], None]:
    from mynabox.gateway.core import Accepted, Duplicate, ReceiverCore, Rejected
    from mynabox.gateway.formatting import format_opened
    from mynabox.gateway.store import SeenStore
    from mynabox.payload.envelope import Kind, SealError
    from mynabox.payload.seal import Opened, Sealer

    seal = sealer()
    assert isinstance(seal, Sealer)
    shown: list[str] = []

    def sink(opened: Opened) -> None:
        shown.append(format_opened(opened, today=NOW.date()))

    core = ReceiverCore(opener(), SeenStore(Path(":memory:")), sink)  # type: ignore[arg-type]
    kinds = list(Kind)

    numbers = itertools.count(1)  # each sealed input is the box's next message

    def one_input(data: bytes) -> None:
        r = Reader(data)
        mode = r.byte()
        topic = r.chunk().decode("utf-8", "replace")
        rest = r.rest()
        payload = rest
        if mode & 1:
            try:
                body = json.loads(rest)
            except (ValueError, RecursionError):
                return
            if not isinstance(body, dict):
                body = {"value": body}
            try:
                kind = kinds[(mode >> 1) % len(kinds)]
                payload = seal.seal(
                    kind, body, now=NOW, clock_synced=bool(mode & 0x10), seq=next(numbers)
                ).token
            except SealError:
                return
        verdict = core.handle(topic, payload, now=NOW)
        assert isinstance(verdict, Accepted | Duplicate | Rejected)
        shown.clear()

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
