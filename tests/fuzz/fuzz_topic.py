"""Fuzz target: MQTT topic parsing and building (payload.topics.parse and topic).

Input: the topic's bytes (UTF-8 with replacement). A parsed topic must rebuild to itself; building from
arbitrary parts may only refuse with ValueError.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.payload.topics import parse as parse_topic
    from mynabox.payload.topics import topic

    def one_input(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        parsed = parse_topic(text)
        if parsed is not None:
            assert topic(*parsed) == text
        device, _, leaf = text.partition("/")
        try:
            built = topic(device, leaf)
        except ValueError:
            return
        assert parse_topic(built) in (None, (device, leaf))

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
