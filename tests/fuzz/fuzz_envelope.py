"""Fuzz target: the envelope opener (payload/seal.py, payload/envelope.py) on arbitrary message bytes.

Input: the MQTT payload as received. ``Opener.open`` may only return an ``Opened`` or raise EnvelopeError.
Seeds are real sealed messages of every kind (they decrypt with the fixed gateway key in keys.py), so
mutations reach the header checks, the decryption and the inner JWS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from fuzzkeys import NOW, opener
from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.payload.envelope import EnvelopeError
    from mynabox.payload.seal import Opened, Opener

    op = opener()
    assert isinstance(op, Opener)

    def one_input(data: bytes) -> None:
        try:
            opened = op.open(data, now=NOW)
        except EnvelopeError:
            return
        assert isinstance(opened, Opened)

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
