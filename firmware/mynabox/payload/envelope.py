"""The envelope's wire format: algorithms, headers, claims, and the one opaque error.

A sealed message is a JWS (ES256, signed by the device key) nested in a JWE (ECDH-ES+A256KW / A256GCM to the
gateway's key), both in compact serialization, so a gateway in any language opens it with a stock JOSE
library.
RFC 7519 §5.2 marks the nesting with ``cty: "JWT"``; RFC 7519 §5.3 allows claims to be replicated into the JWE
header, which we do for the message id, kind and device id only (routing and dedupe before decrypting; no
personal data).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import field
from datetime import UTC, datetime

from mynabox.record import record

JWE_ALG = "ECDH-ES+A256KW"
JWE_ENC = "A256GCM"
JWS_ALG = "ES256"
JWE_CTY = "JWT"  # RFC 7519 §5.2: the plaintext is itself a JWT (our JWS)
JWS_TYP = "mynabox+jwt"  # RFC 8725 §3.11 explicit typing: not mistaken for another JWT

# Claim names, in the signed payload; the first three are replicated into the JWE header.
CLAIM_ID = "jti"
CLAIM_KIND = "kind"
CLAIM_DEVICE = "device"
CLAIM_IAT = "iat"
CLAIM_SYNCED = "clock_synced"
CLAIM_BODY = "body"
CLAIM_SEQ = "seq"  # the device's message number: strictly increasing over the box's life (replay check)
CLAIMS = frozenset({CLAIM_ID, CLAIM_KIND, CLAIM_DEVICE, CLAIM_IAT, CLAIM_SYNCED, CLAIM_BODY, CLAIM_SEQ})
_CLAIMS_BEFORE_SEQ = CLAIMS - {CLAIM_SEQ}
ROUTING = (CLAIM_ID, CLAIM_KIND, CLAIM_DEVICE)

JWE_HEADER_KEYS = frozenset({"alg", "enc", "cty", "epk", *ROUTING})
JWS_HEADER_KEYS = frozenset({"alg", "typ", "kid"})

# ``iat`` fits an unsigned 32-bit time (to 2106): every datetime step after it (age checks, local time for
# the operator) stays in range, whatever an unsynced clock or a hostile box claims.
MAX_IAT = 2**32 - 1
MAX_SEQ = 2**63 - 1  # SQLite's INTEGER

# The one size limit of a sealed message (the MQTT payload), shared by the box (sealing refuses past it),
# the receiver (the opener's size check) and the broker configs (mynabox_testkit.broker and
# docs/gateway/mosquitto.conf). Sealing costs about 16/9 (base64 twice), so summary JSON up to about
# 145 kB fits; a larger summary is sent as a card record instead. A box may configure a lower limit.
MAX_MESSAGE_BYTES = 256 * 1024
# The lowest limit a box may configure: a card record must always fit, and one with the largest certificate
# the card session accepts (card.tlv.MAX_OBJECT, 16 kB) seals to about 41 kB.
MIN_MESSAGE_BYTES = 64 * 1024


# The one definition of a device id (config, topics, envelopes, certificate CNs, file names): lowercase
# letters, digits and '-', 1-32, not starting with '-'. No '/', '+', '#', '.', case or spaces to confuse.
DEVICE_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,31}"
DEVICE_ID_HINT = "lowercase letters, digits and '-', at most 32, not starting with '-'"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")


class Kind(enum.StrEnum):
    """What a message carries; also the MQTT topic leaf it is published under."""

    SUMMARY = "summary"
    CARD_RECORD = "card-record"
    AUDIT = "audit"
    STATE = "state"


class Reason(enum.StrEnum):
    """Why an envelope was rejected: for the receiver's own log only, never sent back to a sender."""

    SIZE = "size"
    FORMAT = "format"
    ALGORITHM = "algorithm"
    DECRYPT = "decrypt"
    UNKNOWN_DEVICE = "unknown-device"
    SIGNATURE = "signature"
    MISMATCH = "mismatch"
    CLAIMS = "claims"
    NO_SEQUENCE = "no-sequence"  # the format before the per-device sequence: refused (replays uncatchable)
    EXPIRED = "expired"
    FUTURE = "future"


class EnvelopeError(Exception):
    """A message could not be opened. The message text is the same for every cause (no oracle)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__("envelope rejected")
        self.reason = reason


class SealError(ValueError):
    """The sender passed something that cannot be sealed (a body that is not JSON, a bad device id)."""


def is_device_id(value: object) -> bool:
    return isinstance(value, str) and _DEVICE_ID.fullmatch(value) is not None


def is_message_id(value: object) -> bool:
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None


def is_seq(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_SEQ


def require_aware(now: datetime) -> datetime:
    """Times are compared across machines: a naive datetime is a programming error, not a rejected message."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def encode_json(value: object) -> bytes:
    """Deterministic compact UTF-8 JSON (sorted keys), so known-answer vectors are stable."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        raise SealError("body is not JSON-serialisable (or holds NaN/Infinity)") from err
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate (found by fuzzing the receiver)
        raise SealError("body holds a lone surrogate, which UTF-8 cannot carry") from err


@record
class Claims:
    """The signed payload of the inner JWS."""

    message_id: str
    kind: Kind
    device_id: str
    iat: int
    clock_synced: bool
    body: Mapping[str, object] = field(repr=False)  # patient data: never in a log line
    seq: int = field(kw_only=True)

    def to_json(self) -> bytes:
        return encode_json(
            {
                CLAIM_ID: self.message_id,
                CLAIM_KIND: self.kind.value,
                CLAIM_DEVICE: self.device_id,
                CLAIM_IAT: self.iat,
                CLAIM_SYNCED: self.clock_synced,
                CLAIM_BODY: dict(self.body),
                CLAIM_SEQ: self.seq,
            }
        )

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.iat, UTC)

    @classmethod
    def from_json(cls, data: bytes) -> Claims:
        """Parse and type-check; any deviation is an :class:`EnvelopeError` (``Reason.CLAIMS``)."""
        try:
            raw = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as err:
            raise EnvelopeError(Reason.CLAIMS) from err
        if isinstance(raw, dict) and raw.keys() == _CLAIMS_BEFORE_SEQ:
            raise EnvelopeError(Reason.NO_SEQUENCE)
        if not isinstance(raw, dict) or raw.keys() != CLAIMS:
            raise EnvelopeError(Reason.CLAIMS)
        message_id, kind, device = raw[CLAIM_ID], raw[CLAIM_KIND], raw[CLAIM_DEVICE]
        iat, synced, body, seq = raw[CLAIM_IAT], raw[CLAIM_SYNCED], raw[CLAIM_BODY], raw[CLAIM_SEQ]
        if not (
            is_message_id(message_id)
            and isinstance(kind, str)  # an unhashable value must not reach the enum lookup
            and kind in Kind._value2member_map_
            and is_device_id(device)
            and type(iat) is int
            and 0 <= iat <= MAX_IAT  # negative times are never produced
            and type(synced) is bool
            and isinstance(body, dict)
            and is_seq(seq)
        ):
            raise EnvelopeError(Reason.CLAIMS)
        return cls(message_id, Kind(kind), device, iat, synced, body, seq=seq)


def _reject_constant(name: str) -> object:
    raise ValueError("NaN/Infinity are not JSON")
