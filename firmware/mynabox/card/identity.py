"""The only way logs, the CLI and the audit record may refer to a card: a keyed hash.

Keyed (HMAC) so that nobody without the box's audit key can test whether a known certificate was read.
"""

from __future__ import annotations

import hashlib
import hmac

HASH_HEX_CHARS = 16


def card_key_hash(certificate_der: bytes, key: bytes) -> str:
    if not key:
        raise ValueError("card hash key must not be empty")
    return hmac.new(key, certificate_der, hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]
