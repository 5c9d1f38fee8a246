"""Fuzz target: the opener past decryption and signature - arbitrary signed claims and inner headers.

Random bytes almost never decrypt, so this target builds a *valid* envelope around fuzzed parts: the input
is a mode byte, the inner JWS header (JSON, u16-length-prefixed) and the claims payload (the rest). They are
signed with the device key and encrypted to the gateway with jwcrypto (the tests' independent JOSE
library), routing headers copied from the claims when they are strings. Only Opened or EnvelopeError may
come out (a claim a library cannot represent, e.g. an ``iat`` past year 9999, must be a refusal too).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable

from fuzzkeys import DEVICE, DEVICE_KEY, GATEWAY_KEY, NOW, opener
from harness import Reader, main


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def setup() -> Callable[[bytes], None]:
    from jwcrypto import jwe, jwk

    from mynabox.payload.envelope import EnvelopeError
    from mynabox.payload.seal import Opener

    op = opener()
    assert isinstance(op, Opener)
    gateway_jwk = jwk.JWK.from_pyca(GATEWAY_KEY.public_key())
    default_inner = json.dumps({"alg": "ES256", "typ": "mynabox+jwt", "kid": DEVICE}).encode()

    def sign(header: bytes, payload: bytes) -> bytes:
        # By hand (not jwcrypto's JWS) so any header bytes can be signed, as a hostile device could.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        signing_input = f"{_b64(header)}.{_b64(payload)}".encode()
        der = DEVICE_KEY.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")).encode()

    def one_input(data: bytes) -> None:
        rd = Reader(data)
        mode = rd.byte()
        inner = rd.chunk() if mode & 1 else default_inner
        payload = rd.rest()
        try:
            claims = json.loads(payload)
        except (ValueError, RecursionError):
            claims = None
        routing = {"jti": "0" * 32, "kind": "summary", "device": DEVICE}
        if isinstance(claims, dict):
            routing.update({k: claims[k] for k in routing if isinstance(claims.get(k), str)})
        protected = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", **routing}
        token = jwe.JWE(sign(inner, payload), protected=json.dumps(protected))
        token.add_recipient(gateway_jwk)
        try:
            op.open(token.serialize(compact=True).encode("ascii"), now=NOW)
        except EnvelopeError:
            return

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
