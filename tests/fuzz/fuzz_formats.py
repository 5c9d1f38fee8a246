"""Fuzz target: the new slot's `storage-formats.json` (update/formats.py) as `update install` reads it out of
the slot RAUC has just written (debugfs's bytes, decoded UTF-8 with replacement).

Input: the file. Only FormatsError escapes, with a bounded printable reason; a parsed declaration is
consistent (1 ≤ oldest_reader ≤ schema) and its refusal, if any, is one bounded line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.update import formats

    def one_input(data: bytes) -> None:
        try:
            declared = formats.parse(data.decode("utf-8", "replace"))
        except formats.FormatsError as err:
            reason = str(err)
            assert reason.isprintable() and len(reason) <= 200, reason
            return
        assert 1 <= declared.oldest_reader <= declared.schema
        for running in (1, declared.schema):
            why = formats.refusal(declared, running_schema=running)
            assert why is None or (why.isprintable() and len(why) <= 300), why

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
