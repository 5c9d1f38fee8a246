"""Fuzz target: the last update result kept on the state partition (update/lastresult.py), as
adapters/updatefiles.py reads it back (its first MAX_BYTES + 1 bytes, UTF-8 with replacement) for the health
check and the `state` topic.

Input: the file. ``parse`` never raises: a usable Result (known result, bounded printable version and
detail, an aware time) or None; what the box writes and publishes from it reads back the same.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.update import lastresult

    def one_input(data: bytes) -> None:
        kept = lastresult.parse(data[: lastresult.MAX_BYTES + 1].decode("utf-8", "replace"))
        if kept is None:
            return
        assert kept.result in lastresult.RESULTS and kept.at.tzinfo is not None
        assert kept.version.isprintable() and len(kept.version) <= 41
        assert kept.detail.isprintable() and len(kept.detail) <= 201
        text = kept.encode()
        assert len(text) <= lastresult.MAX_BYTES, len(text)
        again = lastresult.parse(text)
        assert again == lastresult.Result(
            kept.result, kept.version, kept.at.replace(microsecond=0), kept.detail
        ), (kept, again)
        json.dumps(kept.published(), ensure_ascii=False).encode("utf-8")

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
