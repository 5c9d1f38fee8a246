"""Keys as bytes: EC P-256 private keys (PEM, PKCS#8 written; SEC1 also read), public keys and certificates,
the audit key, and :class:`Secret`. Pure: the files they live in are read and written by
``mynabox.adapters.keyfiles``.

Errors name the source given and what is wrong, never the bytes; key objects and :class:`Secret` never
print their material.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

T = TypeVar("T")

AUDIT_KEY_MIN_BYTES = 32


class KeyFileError(Exception):
    """A key or certificate file is missing, unreadable, or not what we need."""


class Secret(Generic[T]):
    """A secret whose ``repr``/``str`` are masked, so it can sit in a config dataclass that gets logged."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")


def generate_device_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> Secret[bytes]:
    """PKCS#8 PEM, unencrypted: the file's permissions and the credential store protect it."""
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def public_key_pem(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_private_key(data: bytes, *, source: str = "key") -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        # cryptography's messages do not quote the key, but ours stays short and uniform anyway.
        raise KeyFileError(f"{source}: not an unencrypted PEM private key") from err
    return _require_p256_private(key, source)


def parse_public_key(data: bytes, *, source: str = "key") -> ec.EllipticCurvePublicKey:
    """A PEM ``PUBLIC KEY`` (SPKI) or a PEM ``CERTIFICATE`` whose key is P-256."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{source}: not a PEM public key or certificate") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{source}: not an EC P-256 public key")
    return key


def _require_p256_private(key: object, source: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{source}: not an EC P-256 private key")
    return key


def parse_audit_key(data: bytes, *, source: str = "audit key") -> Secret[bytes]:
    """The audit chain's HMAC key: raw bytes, at least 32."""
    if len(data) < AUDIT_KEY_MIN_BYTES:
        raise KeyFileError(f"{source}: an audit key needs at least {AUDIT_KEY_MIN_BYTES} bytes")
    return Secret(data)
