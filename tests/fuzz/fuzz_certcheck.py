"""Fuzz target: the advisory certificate check (card/certcheck.py) on arbitrary certificate bytes.

Input: one mode byte, then the bytes a card returned as its certificate. ``check_certificate`` must never
raise (a damaged certificate is MALFORMED); its verdict must serialise. Mode bit 1 instead loads the bytes as
an extra trust root (PEM or DER, as test mode does from a file), which may only refuse with ValueError.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from harness import Reader, main


def setup() -> Callable[[bytes], None]:
    from mynabox.card.certcheck import CertStatus, TrustStore, check_certificate
    from mynabox.card.identity import card_key_hash

    trust = TrustStore.jlis()
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def one_input(data: bytes) -> None:
        r = Reader(data)
        mode = r.byte()
        der = r.rest()
        if mode & 2:
            with contextlib.suppress(ValueError):
                TrustStore.jlis(extra_roots=[der])
            return
        check = check_certificate(der, trust, now=now, clock_synced=bool(mode & 1))
        json.dumps(check.as_dict())
        if check.status is not CertStatus.MALFORMED:
            assert check.not_before is not None and check.not_after is not None
        assert len(card_key_hash(der, b"k" * 32)) == 16

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
