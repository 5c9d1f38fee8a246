"""Seal and open envelopes (see :mod:`mynabox.payload.envelope` for the format).

Like fernet, every random input of a seal (message id, JWE ephemeral key, CEK, IV) is drawn in one place and
handed to ``_seal_from_parts``, so tests can pin them and check known-answer vectors byte for byte. ES256 is
signed deterministically (RFC 6979): the signature no longer depends on the RNG of a Pi that may have just
booted, and it keeps the vectors reproducible; any ES256 verifier accepts it.

``Opener`` is pure: replay protection is the receiver's job. Every message carries the device's sequence
number (``seq``, signed), which the box's outbox assigns in the transaction that stores the sealed message, so
a gateway needs one number per device, not a memory of every id (``mynabox.gateway.store``).
"""

from __future__ import annotations

import binascii
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc import jwe, jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import AESAlgKeyWrapping, ECDHESAlgKeyAgreement, ESAlgorithm, GCMEncModel
from joserfc.jwk import ECKey
from joserfc.registry import HeaderParameter, HeaderRegistryDict
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

from mynabox.payload.envelope import (
    CLAIM_DEVICE,
    CLAIM_ID,
    CLAIM_KIND,
    DEVICE_ID_HINT,
    JWE_ALG,
    JWE_CTY,
    JWE_ENC,
    JWE_HEADER_KEYS,
    JWS_ALG,
    JWS_HEADER_KEYS,
    JWS_TYP,
    MAX_MESSAGE_BYTES,
    Claims,
    EnvelopeError,
    Kind,
    Reason,
    SealError,
    is_device_id,
    is_message_id,
    is_seq,
    require_aware,
)
from mynabox.record import record

__all__ = ["MessageTooLarge", "Opened", "Opener", "Sealed", "Sealer"]

_CEK_BYTES = 32  # A256GCM
_IV_BYTES = 12  # GCM's 96-bit IV (RFC 7518 §5.3)
_P256_SCALAR_BYTES = 32

# Everything a parser could raise on hostile input; each becomes one EnvelopeError.
_DECODE_ERRORS = (
    JoseError,
    ValueError,  # includes json, UnicodeDecodeError, binascii.Error
    TypeError,
    KeyError,
    IndexError,
    AssertionError,  # joserfc checks some invariants with assert
    RecursionError,
    OverflowError,
)


def _is_str(value: object) -> None:
    if not isinstance(value, str):
        raise ValueError("must be a string")


# RFC 7519 §5.3 replicated claims; joserfc's strict header check must know them.
_ROUTING_HEADERS: HeaderRegistryDict = {
    CLAIM_ID: HeaderParameter("Message id (replicated claim)", _is_str, True),
    CLAIM_KIND: HeaderParameter("Message kind (replicated claim)", _is_str, True),
    CLAIM_DEVICE: HeaderParameter("Device id (replicated claim)", _is_str, True),
}


class MessageTooLarge(SealError):
    """The sealed message would pass the sealer's size limit; nothing was sealed (the caller sends less)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"sealed message of {size} bytes is over the limit of {limit}")
        self.size, self.limit = size, limit


@record
class Sealed:
    message_id: str
    kind: Kind
    token: bytes = field(repr=False)
    seq: int


@record
class Opened:
    message_id: str
    device_id: str
    kind: Kind
    created_at: datetime
    clock_synced: bool
    body: Mapping[str, object] = field(repr=False)  # patient data: never in a log line
    seq: int
    key: str = ""  # RFC 7638 thumbprint of the device key that verified it: replay numbers are kept per key


@record
class _Parts:
    """The random inputs of one seal."""

    message_id: str
    ephemeral_key: ec.EllipticCurvePrivateKey = field(repr=False)
    cek: bytes = field(repr=False)
    iv: bytes = field(repr=False)


def _random_parts() -> _Parts:
    return _Parts(
        message_id=uuid.uuid4().hex,
        ephemeral_key=ec.generate_private_key(ec.SECP256R1()),
        cek=secrets.token_bytes(_CEK_BYTES),
        iv=secrets.token_bytes(_IV_BYTES),
    )


def _require_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, what: str) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise SealError(f"{what} must be an EC P-256 key")


class _RFC6979(ec.ECDSA):
    """``ec.ECDSA(SHA256(), deterministic_signing=True)`` as the key's ``sign`` reads it (the two documented
    properties), without its constructor, which imports cryptography's OpenSSL backend module only to ask
    whether the build signs deterministically: ≈ 0.35 MB the daemon held from its first seal on. Every
    build here can (the wheels' OpenSSL, Debian 13's); tests/payload/test_seal.py asserts it and that the
    signatures are those of the constructed algorithm."""

    def __init__(self) -> None:  # not the parent's: it is the backend probe and two fields
        pass

    @property
    def algorithm(self) -> SHA256:
        return _SHA256

    @property
    def deterministic_signing(self) -> bool:
        return True


_SHA256 = SHA256()
_SIGNATURE = _RFC6979()


class _DeterministicES256(ESAlgorithm):
    def __init__(self) -> None:
        super().__init__(JWS_ALG, "P-256", 256, recommended=True)

    def sign(self, msg: bytes, key: ECKey) -> bytes:
        der = key.get_op_key("sign").sign(msg, _SIGNATURE)
        r, s = decode_dss_signature(der)
        return r.to_bytes(_P256_SCALAR_BYTES, "big") + s.to_bytes(_P256_SCALAR_BYTES, "big")


class _SignRegistry(jws.JWSRegistry):
    _es256 = _DeterministicES256()

    def get_alg(self, name: str) -> ESAlgorithm:
        if name != JWS_ALG:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self._es256


class _FixedGCM(GCMEncModel):
    def __init__(self, cek: bytes, iv: bytes) -> None:
        super().__init__(256)
        self._cek, self._iv = cek, iv

    def generate_cek(self) -> bytes:
        return self._cek

    def generate_iv(self) -> bytes:
        return self._iv


class _FixedEphemeral(ECDHESAlgKeyAgreement):
    def __init__(self, ephemeral: ECKey) -> None:
        super().__init__(AESAlgKeyWrapping(256, True))
        self._ephemeral = ephemeral
        self._recipients: list[jwe.Recipient[ECKey]] = []

    def prepare_ephemeral_key(self, recipient: jwe.Recipient[ECKey]) -> None:
        self._recipients.append(recipient)
        recipient.ephemeral_key = self._ephemeral
        super().prepare_ephemeral_key(recipient)

    def release(self) -> None:
        """Empty the recipients of a finished seal. joserfc's ``encrypt_compact`` leaves its message and its
        recipient pointing at each other: a reference cycle holding the signed plaintext (the patient's
        data), the CEK and every segment until the collector's next full pass (≈ 14 KB per read, 0.35 MB
        between passes in the daemon). The recipient is no longer used once the token is returned; emptied,
        the cycle is gone and both are freed at once."""
        for recipient in self._recipients:
            vars(recipient).clear()
        self._recipients.clear()


class _PartsRegistry(jwe.JWERegistry):
    """A registry that answers only our two algorithms, fed with this seal's random inputs."""

    def __init__(self, parts: _Parts) -> None:
        super().__init__(header_registry=_ROUTING_HEADERS, algorithms=[JWE_ALG, JWE_ENC])
        self._alg = _FixedEphemeral(ECKey.import_key(parts.ephemeral_key))
        self._enc = _FixedGCM(parts.cek, parts.iv)

    def get_alg(self, name: str) -> _FixedEphemeral:
        if name != JWE_ALG:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self._alg

    def get_enc(self, name: str) -> _FixedGCM:
        if name != JWE_ENC:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self._enc

    def release(self) -> None:
        self._alg.release()


class Sealer:
    """Seals message bodies on the device: signed by ``device_key``, readable only with the gateway's key."""

    def __init__(
        self,
        device_id: str,
        device_key: ec.EllipticCurvePrivateKey,
        gateway_key: ec.EllipticCurvePublicKey,
        *,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if not is_device_id(device_id):
            raise SealError(f"device id must be {DEVICE_ID_HINT}")
        _require_p256(device_key, "device key")
        _require_p256(gateway_key, "gateway key")
        self._device_id = device_id
        self._device_key = ECKey.import_key(device_key)
        self._gateway_key = ECKey.import_key(gateway_key)
        self._sign_registry = _SignRegistry(algorithms=[JWS_ALG])
        if not 0 < max_bytes <= MAX_MESSAGE_BYTES:
            raise SealError(f"max_bytes must be 1-{MAX_MESSAGE_BYTES}: receivers and brokers refuse more")
        self._max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"Sealer(device_id={self._device_id!r}, max_bytes={self._max_bytes})"

    @property
    def device_id(self) -> str:
        return self._device_id

    def seal(
        self, kind: Kind, body: Mapping[str, object], *, now: datetime, clock_synced: bool, seq: int
    ) -> Sealed:
        """``seq``: this device's next message number (1, 2, …; never reused): the outbox hands it out."""
        return self._seal_from_parts(
            kind, body, now=now, clock_synced=clock_synced, seq=seq, parts=_random_parts()
        )

    def _seal_from_parts(
        self,
        kind: Kind,
        body: Mapping[str, object],
        *,
        now: datetime,
        clock_synced: bool,
        seq: int,
        parts: _Parts,
    ) -> Sealed:
        kind = Kind(kind)
        if not isinstance(body, Mapping) or not all(isinstance(k, str) for k in body):
            raise SealError("body must be a mapping with string keys")
        if not is_seq(seq):
            raise SealError("seq must be an int from 1 to 2**63-1")
        claims = Claims(
            message_id=parts.message_id,
            kind=kind,
            device_id=self._device_id,
            iat=int(require_aware(now).timestamp()),
            clock_synced=bool(clock_synced),
            body=body,
            seq=seq,
        )
        token = self._seal_payload(claims.to_json(), kind.value, parts)
        return Sealed(parts.message_id, kind, token, seq)

    def _seal_payload(self, payload: bytes, kind: str, parts: _Parts) -> bytes:
        """Sign and encrypt claim bytes as given (tests use this seam to seal hostile claims)."""
        if not is_message_id(parts.message_id) or len(parts.cek) != _CEK_BYTES or len(parts.iv) != _IV_BYTES:
            raise SealError("malformed random parts")
        _require_p256(parts.ephemeral_key, "ephemeral key")
        signed = jws.serialize_compact(
            {"alg": JWS_ALG, "typ": JWS_TYP, "kid": self._device_id},
            payload,
            self._device_key,
            registry=self._sign_registry,
        )
        protected = {
            "alg": JWE_ALG,
            "enc": JWE_ENC,
            "cty": JWE_CTY,
            CLAIM_ID: parts.message_id,
            CLAIM_KIND: kind,
            CLAIM_DEVICE: self._device_id,
        }
        registry = _PartsRegistry(parts)
        try:
            token = jwe.encrypt_compact(protected, signed, self._gateway_key, registry=registry)
        finally:
            registry.release()
        if len(token) > self._max_bytes:  # the receiver would refuse it after the broker's PUBACK: lost
            raise MessageTooLarge(len(token), self._max_bytes)
        return token.encode("ascii")


class Opener:
    """Opens envelopes at the gateway; every failure is the same :class:`EnvelopeError`.

    ``max_age`` and ``max_skew`` apply only to messages whose sender had a synced clock: an unsynced Pi's
    timestamp says nothing, and refusing a patient's summary over it would be worse than accepting it
    (duplicates are still dropped by message id).
    """

    def __init__(
        self,
        gateway_key: ec.EllipticCurvePrivateKey,
        device_keys: Mapping[str, ec.EllipticCurvePublicKey],
        *,
        max_age: timedelta,
        max_skew: timedelta,
        max_size: int,
    ) -> None:
        _require_p256(gateway_key, "gateway key")
        for device_id, key in device_keys.items():
            if not is_device_id(device_id):
                raise SealError("a device id in the key map is malformed")
            _require_p256(key, "device key")
        if max_size <= 0 or max_age < timedelta(0) or max_skew < timedelta(0):
            raise ValueError("max_size must be positive, max_age and max_skew not negative")
        self._gateway_key = ECKey.import_key(gateway_key)
        self._device_keys = {d: ECKey.import_key(k) for d, k in device_keys.items()}
        self._thumbprints = {d: k.thumbprint() for d, k in self._device_keys.items()}
        self._max_age, self._max_skew, self._max_size = max_age, max_skew, max_size
        self._jwe_registry = jwe.JWERegistry(header_registry=_ROUTING_HEADERS, algorithms=[JWE_ALG, JWE_ENC])
        self._jwe_registry.max_ciphertext_length = max_size
        self._jws_registry = jws.JWSRegistry(algorithms=[JWS_ALG])
        self._jws_registry.max_payload_length = max_size
        self._jws_registry.max_header_length = 512

    def __repr__(self) -> str:
        return f"Opener(devices={len(self._device_keys)}, max_size={self._max_size})"

    @property
    def thumbprints(self) -> dict[str, str]:
        """Each known device's key as its RFC 7638 thumbprint (``Opened.key``)."""
        return dict(self._thumbprints)

    def open(self, token: bytes, *, now: datetime) -> Opened:
        now = require_aware(now)
        if not isinstance(token, bytes | bytearray):
            raise EnvelopeError(Reason.FORMAT)
        if len(token) > self._max_size:
            raise EnvelopeError(Reason.SIZE)
        token = bytes(token)
        header = _stage(Reason.FORMAT, _compact_header, token, 5)
        _stage(Reason.ALGORITHM, _check_jwe_header, header)
        device_id = str(header[CLAIM_DEVICE])
        device_key = self._device_keys.get(device_id)
        if device_key is None:
            raise EnvelopeError(Reason.UNKNOWN_DEVICE)
        signed: bytes = _stage(Reason.DECRYPT, self._decrypt, token)

        inner = _stage(Reason.FORMAT, _compact_header, signed, 3)
        _stage(Reason.ALGORITHM, _check_jws_header, inner)
        if inner["kid"] != device_id:
            raise EnvelopeError(Reason.MISMATCH)
        payload: bytes = _stage(Reason.SIGNATURE, self._verify, signed, device_key)

        claims = Claims.from_json(payload)  # raises only EnvelopeError; every claim value is bounded there
        if (claims.message_id, claims.kind.value, claims.device_id) != tuple(
            header[k] for k in (CLAIM_ID, CLAIM_KIND, CLAIM_DEVICE)
        ):
            raise EnvelopeError(Reason.MISMATCH)
        if claims.clock_synced:
            created = claims.created_at
            if now - created > self._max_age:
                raise EnvelopeError(Reason.EXPIRED)
            if created - now > self._max_skew:
                raise EnvelopeError(Reason.FUTURE)
        return Opened(
            claims.message_id,
            claims.device_id,
            claims.kind,
            claims.created_at,
            claims.clock_synced,
            claims.body,
            claims.seq,
            self._thumbprints[device_id],
        )

    def _decrypt(self, token: bytes) -> bytes:
        obj = jwe.decrypt_compact(token, self._gateway_key, registry=self._jwe_registry)
        # The message and its recipient point at each other (the cycle the Sealer releases too): without
        # this the plaintext, the patient's data, waits for the collector's next full pass.
        obj.recipient = None
        if obj.plaintext is None:
            raise ValueError("no plaintext")
        return obj.plaintext

    def _verify(self, signed: bytes, key: ECKey) -> bytes:
        return jws.deserialize_compact(signed, key, registry=self._jws_registry).payload


def _stage(reason: Reason, fn: Any, *args: Any) -> Any:
    """Run one step of opening; any parser error becomes the opaque error tagged with the step."""
    try:
        return fn(*args)
    except EnvelopeError:
        raise
    except _DECODE_ERRORS as err:
        raise EnvelopeError(reason) from err


def _compact_header(token: bytes, segments: int) -> dict[str, object]:
    """Split a compact serialization, insist on canonical base64url everywhere, return the decoded header."""
    parts = token.split(b".")
    if len(parts) != segments:
        raise ValueError("wrong number of segments")
    for part in parts:
        if urlsafe_b64encode(urlsafe_b64decode(part)) != part:
            raise binascii.Error("non-canonical base64url")
    header = json.loads(urlsafe_b64decode(parts[0]).decode("utf-8"), parse_constant=_no_constant)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header


def _no_constant(name: str) -> object:
    raise ValueError("NaN/Infinity are not JSON")


def _check_jwe_header(header: dict[str, object]) -> None:
    if header.keys() != JWE_HEADER_KEYS:
        raise ValueError("unexpected JWE header parameters")
    if (header["alg"], header["enc"], header["cty"]) != (JWE_ALG, JWE_ENC, JWE_CTY):
        raise ValueError("not our algorithms")
    epk = header["epk"]
    if not isinstance(epk, dict) or epk.get("kty") != "EC" or epk.get("crv") != "P-256":
        raise ValueError("ephemeral key is not P-256")
    if not (
        is_message_id(header[CLAIM_ID])
        and header[CLAIM_KIND] in Kind._value2member_map_
        and is_device_id(header[CLAIM_DEVICE])
    ):
        raise ValueError("malformed routing header")


def _check_jws_header(header: dict[str, object]) -> None:
    if header.keys() != JWS_HEADER_KEYS or header["alg"] != JWS_ALG or header["typ"] != JWS_TYP:
        raise ValueError("not our signature header")
