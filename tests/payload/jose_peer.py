"""The second, independent JOSE implementation (jwcrypto): opens what we seal and seals what we must open.

Crafting helpers build envelopes with exactly the headers a test wants, including ones we must refuse.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwe, jwk, jws


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def to_jwk(key: object) -> jwk.JWK:
    return jwk.JWK.from_pyca(key)


def sign(
    payload: bytes,
    key: object,
    *,
    header: Mapping[str, object],
) -> str:
    token = jws.JWS(payload)
    token.add_signature(to_jwk(key), alg=None, protected=json.dumps(dict(header)))
    return str(token.serialize(compact=True))


def unsigned(payload: bytes, header: Mapping[str, object]) -> str:
    """An 'alg: none' JWS, built by hand: no sane library will make one."""
    return f"{b64(json.dumps(dict(header)).encode())}.{b64(payload)}."


def encrypt(plaintext: str | bytes, recipient: object, *, header: Mapping[str, object]) -> bytes:
    data = plaintext.encode("ascii") if isinstance(plaintext, str) else plaintext
    token = jwe.JWE(data, protected=json.dumps(dict(header)))
    token.allowed_algs = [str(header["alg"]), str(header["enc"])]
    token.add_recipient(to_jwk(recipient))
    return str(token.serialize(compact=True)).encode("ascii")


def decrypt(token: bytes, gateway_key: ec.EllipticCurvePrivateKey) -> tuple[dict[str, object], str]:
    """Returns the JWE protected header and the inner compact JWS."""
    outer = jwe.JWE()
    outer.deserialize(token.decode("ascii"), key=to_jwk(gateway_key))
    return json.loads(outer.objects["protected"]), outer.payload.decode("ascii")


def verify(signed: str, device_key: ec.EllipticCurvePublicKey) -> tuple[dict[str, object], dict[str, object]]:
    """Returns the JWS protected header and the claims."""
    inner = jws.JWS()
    inner.deserialize(signed)
    inner.verify(to_jwk(device_key), alg="ES256")
    return inner.jose_header, json.loads(inner.payload)
