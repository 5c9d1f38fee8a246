"""Fuzz target: `rauc status --detailed --output-format=json` (update/raucstatus.py) as `update status` reads
it (RAUC's stdout, or a file, decoded UTF-8 with replacement).

Input: RAUC's output. Only StatusError escapes, with a bounded reason; what `describe` prints is printable
(no terminal escapes) and bounded whatever the input's size.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.update import raucstatus, text

    def one_input(data: bytes) -> None:
        try:
            status = raucstatus.parse(data.decode("utf-8", "replace"))
        except raucstatus.StatusError as err:
            reason = str(err)
            assert reason.isprintable() and len(reason) <= 200, reason
            return
        lines = raucstatus.describe(status)
        assert len(lines) <= 2 + raucstatus.MAX_SLOTS
        for line in lines:
            assert line.isprintable() and len(line) <= 8 * (text.MAX_TEXT + 1) + 100, line

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
