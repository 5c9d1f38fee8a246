"""Fuzz target: the JPKI read (card/jpki.py driven by card/session.py) against arbitrary card answers.

Input: one byte choosing the reader capabilities remembered from earlier taps (extended / SFI / length
hint), then the card's answers, each a u16-length-prefixed chunk (status words, chaining 61xx, 6Cxx, DER
headers that lie, FF filler ...). When the input runs out the card is gone (CardRemoved). The session may
only end in a JpkiRead that holds one DER object within the bounds, or a CardError.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import Reader, main


def caps_from(r: Reader) -> object:
    from mynabox.card.jpki import ReaderCaps

    b = r.byte()
    choice = (None, True, False)
    hint = r.u16() if b & 0x80 else None
    return ReaderCaps(extended=choice[b % 3], sfi=choice[(b // 3) % 3], length_hint=hint)


def setup() -> Callable[[bytes], None]:
    from mynabox.card import session
    from mynabox.card.errors import CardError, CardRemoved
    from mynabox.card.jpki import MAX_APDUS, JpkiRead, read_auth_certificate
    from mynabox.card.tlv import MAX_OBJECT, der_total_length

    class Answers:
        def __init__(self, r: Reader) -> None:
            self.r = r

        def transmit(self, command: bytes) -> bytes:
            if not self.r.left():
                raise CardRemoved("the input ran out")
            return self.r.chunk()

    def one_input(data: bytes) -> None:
        r = Reader(data)
        caps = caps_from(r)
        try:
            result = session.run(read_auth_certificate(caps), Answers(r))  # type: ignore[arg-type]
        except CardError:
            return
        assert isinstance(result, JpkiRead)
        cert = result.certificate
        assert 0 < len(cert) <= MAX_OBJECT and cert[0] == 0x30, "not one DER object"
        assert der_total_length(cert) == len(cert), "certificate not cut at its DER length"
        assert result.apdus <= MAX_APDUS
        assert result.caps.length_hint == len(cert)

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
