"""Fuzz target: the hospital's pages (gateway/page.py): an opened message's body rendered as its page and its
row of the list.

Input: a flags byte (bit 0: card record instead of summary, bit 1: the box's clock synced), then the body's
JSON. Whatever the body holds (it is signed by a known box, so anything a box can send), rendering may not
raise, and the page stays within a bound of the body's size (no input multiplies itself).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from fuzzkeys import DEVICE, NOW
from harness import main

# Per input byte: an escape (\\U000e0001: 10 bytes for 4) at most, the allergy and drug names shown twice
# (table and flags), and the list's row; plus the page's fixed part.
EXPANSION = 24
FIXED = 64 * 1024


def setup() -> Callable[[bytes], None]:
    from mynabox.gateway.page import entry_for, render_index, render_page
    from mynabox.payload.envelope import Kind
    from mynabox.payload.seal import Opened

    def one_input(data: bytes) -> None:
        if not data:
            return
        try:
            body = json.loads(data[1:])
        except (ValueError, RecursionError):
            return
        if not isinstance(body, dict):
            return  # the opener refuses a body that is not an object
        kind = Kind.CARD_RECORD if data[0] & 1 else Kind.SUMMARY
        opened = Opened("0" * 32, DEVICE, kind, NOW, bool(data[0] & 2), body, 1)
        page = render_page(opened)
        row = render_index([entry_for(opened, NOW)], hours=24)
        bound = EXPANSION * len(data) + FIXED
        assert len(page.encode()) <= bound and len(row.encode()) <= bound, (len(page), len(row), len(data))

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
