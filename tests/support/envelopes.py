"""Envelopes a box gone bad could send: validly signed and encrypted, with whatever claims a test wants.

The headers and algorithms are ours (so the message passes every check before the claims); the claim bytes
are exactly what the test gives. Used by the opener's property tests and the receiver's hostile-input tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from mynabox.payload.envelope import CLAIM_ID, CLAIM_KIND, Kind, is_message_id
from mynabox.payload.seal import Sealer, _random_parts


def seal_claims(sealer: Sealer, claims: Mapping[str, object] | bytes) -> bytes:
    """Sign and encrypt ``claims`` as given (a mapping is dumped as JSON, NaN allowed; bytes go as they are).

    The routing header repeats the claims' ``jti`` and ``kind`` where those are well formed, so a test of one
    odd claim value is not refused earlier as a header mismatch.
    """
    parts = _random_parts()
    kind = Kind.SUMMARY.value
    if isinstance(claims, Mapping):
        message_id, claimed_kind = claims.get(CLAIM_ID), claims.get(CLAIM_KIND)
        if is_message_id(message_id):
            parts = replace(parts, message_id=str(message_id))
        if isinstance(claimed_kind, str) and claimed_kind in Kind._value2member_map_:
            kind = claimed_kind
        payload = json.dumps(dict(claims)).encode("ascii")  # a lone surrogate travels as its JSON escape
    else:
        payload = claims
    return sealer._seal_payload(payload, kind, parts)
