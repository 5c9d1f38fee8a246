"""The gateway contract's test vectors (docs/gateway/vectors/): test keys, sealed messages and what a receiver
must make of each, so any implementation can test itself without a box.

Everything is derived from fixed seeds (keys, message ids, ephemeral keys, content keys, IVs; ES256 is
deterministic), so the command writes the same bytes every time and a test compares them with the checked-in
files. Bodies are built by the box's own functions (``mynabox_testkit.messages``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.payload.envelope import MAX_MESSAGE_BYTES, Kind
from mynabox.payload.keys import Secret, private_key_pem, public_key_pem
from mynabox.payload.seal import Sealer, _Parts
from mynabox_testkit.messages import audit_body, patient_body
from mynabox_testkit.patients import patient

NOW = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)  # the receiver's clock for every vector
MAX_AGE = timedelta(days=7)
MAX_SKEW = timedelta(minutes=5)
A, B = "amb-vec-01", "amb-vec-02"  # enrolled: the gateway holds their public keys
STRANGER = "amb-vec-99"  # not enrolled
_N = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)  # P-256's order

# Where a refusal is decided: "envelope" ones a bare JOSE opener already refuses (the JavaScript one does);
# "claims" ones need the claim checks; "receiver" ones the topic, body and replay rules.
ENVELOPE_REASONS = frozenset(
    {"size", "format", "algorithm", "unknown-device", "decrypt", "signature", "mismatch"}
)
CLAIMS_REASONS = frozenset({"claims", "no-sequence", "expired", "future"})


def _key(label: str) -> ec.EllipticCurvePrivateKey:
    seed = int.from_bytes(hashlib.sha256(f"mynabox test vector key {label}".encode()).digest(), "big")
    return ec.derive_private_key(seed % (_N - 1) + 1, ec.SECP256R1())


def _parts(name: str) -> _Parts:
    def h(what: str) -> bytes:
        return hashlib.sha256(f"mynabox test vector {what} {name}".encode()).digest()

    return _Parts(
        message_id=h("jti").hex()[:32],
        ephemeral_key=_key(f"ephemeral {name}"),
        cek=h("cek"),
        iv=h("iv")[:12],
    )


@dataclass
class Vector:
    name: str
    description: str
    topic: str
    payload: bytes
    expect: dict[str, object]
    repeat: int = field(default=0)  # >0: the payload is ``payload`` repeated this many times

    def to_json(self) -> dict[str, object]:
        if self.topic == "":  # an operator's step, not a message
            return {"name": self.name, "description": self.description, "action": self.expect}
        out: dict[str, object] = {"name": self.name, "description": self.description, "topic": self.topic}
        if self.repeat:
            out["payload_repeat"] = {"text": self.payload.decode("ascii"), "times": self.repeat}
        else:
            out["payload"] = self.payload.decode("ascii")
        out["expect"] = self.expect
        return out


class _Builder:
    def __init__(self) -> None:
        self.gateway = _key("gateway")
        self.devices = {d: _key(f"device {d}") for d in (A, B, STRANGER)}
        self.vectors: list[Vector] = []

    def sealer(
        self, device: str, *, key: str | None = None, gateway: ec.EllipticCurvePrivateKey | None = None
    ) -> Sealer:
        signing = self.devices[key or device]
        return Sealer(device, signing, (gateway or self.gateway).public_key())

    def seal(
        self,
        name: str,
        device: str,
        kind: Kind,
        body: Mapping[str, object],
        *,
        seq: int,
        at: datetime = NOW,
        synced: bool = True,
        sealer: Sealer | None = None,
        parts: _Parts | None = None,
    ) -> tuple[bytes, dict[str, object]]:
        s = sealer or self.sealer(device)
        sealed = s._seal_from_parts(
            kind, body, now=at, clock_synced=synced, seq=seq, parts=parts or _parts(name)
        )
        claims = {
            "jti": sealed.message_id,
            "kind": kind.value,
            "device": device,
            "iat": int(at.timestamp()),
            "clock_synced": synced,
            "seq": seq,
            "body": json.loads(json.dumps(dict(body))),
        }
        return sealed.token, claims

    def raw(
        self, name: str, device: str, claims: Mapping[str, object] | bytes, kind: str = "summary"
    ) -> bytes:
        """Claims sealed as given (what a box gone bad could sign)."""
        payload = claims if isinstance(claims, bytes) else json.dumps(dict(claims)).encode("ascii")
        return self.sealer(device)._seal_payload(payload, kind, _parts(name))

    def add(self, name: str, description: str, topic: str, payload: bytes, **expect: object) -> None:
        self.vectors.append(Vector(name, description, topic, payload, dict(expect)))

    def accepted(
        self, name: str, description: str, topic: str, token: bytes, claims: dict[str, object]
    ) -> None:
        self.add(name, description, topic, token, outcome="accepted", claims=claims)

    def refused(self, name: str, description: str, topic: str, payload: bytes, reason: str) -> None:
        layer = (
            "envelope" if reason in ENVELOPE_REASONS else "claims" if reason in CLAIMS_REASONS else "receiver"
        )
        self.add(name, description, topic, payload, outcome="refused", reason=reason, layer=layer)


def _topic(device: str, leaf: str) -> str:
    return f"mynabox/{device}/{leaf}"


def _claims_of(token_claims: dict[str, object], **override: object) -> dict[str, object]:
    return {**token_claims, **override}


def build() -> dict[str, bytes]:
    """Every file of docs/gateway/vectors/, by relative path."""
    b = _Builder()
    summary_kind, summary, shown = patient_body(patient("warfarin-elderly"), NOW)
    card_kind, card, _ = patient_body(patient("not-registered"), NOW)
    healthy_kind, healthy, _ = patient_body(patient("healthy"), NOW)
    s_a, s_b = _topic(A, "summary"), _topic(B, "summary")

    first, first_claims = b.seal("summary", A, summary_kind, summary, seq=1)
    b.accepted("summary", "a summary with an anticoagulant flag (warfarin)", s_a, first, first_claims)
    b.add("summary-again", "the same message again (QoS 1 redelivery)", s_a, first, outcome="duplicate")
    token, claims = b.seal("card-record", A, card_kind, card, seq=2)
    b.accepted("card-record", "a card record: the patient is not registered", s_a, token, claims)
    audit_key = hashlib.sha256(b"mynabox test vector audit key").digest()  # 32 raw bytes, as provisioned
    audit = audit_body(
        A,
        time=NOW,
        message_id=first_claims["jti"],  # type: ignore[arg-type]
        shown=shown,
        key=Secret(audit_key),
    )
    token, claims = b.seal("audit", A, Kind.AUDIT, audit, seq=3)
    b.accepted(
        "audit",
        "the audit record of the first read: record.message = its jti",
        _topic(A, "audit"),
        token,
        claims,
    )
    old = datetime(2020, 1, 1, tzinfo=UTC)
    token, claims = b.seal("unsynced-old", A, healthy_kind, healthy, seq=4, at=old, synced=False)
    b.accepted("unsynced-old", "an unsynced clock's old iat: no age rule", s_a, token, claims)

    spare, _ = b.seal("spare", A, healthy_kind, healthy, seq=50)
    b.refused("topic", "a valid message on a leaf that carries none", _topic(A, "state"), spare, "topic")
    b.vectors.append(
        Vector(
            "size",
            "one byte over 262,144",
            s_a,
            b"A",
            {"outcome": "refused", "reason": "size", "layer": "envelope"},
            MAX_MESSAGE_BYTES + 1,
        )
    )
    b.refused("format", "not a compact JWE", s_a, b"not-a-jwe", "format")
    header, rest = spare.split(b".", 1)
    doc = json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4)))
    doc["alg"] = "ECDH-ES"
    swapped = base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=")
    b.refused(
        "algorithm", "the JWE header's alg is ECDH-ES (not ours)", s_a, swapped + b"." + rest, "algorithm"
    )
    token, _ = b.seal("unknown-device", STRANGER, healthy_kind, healthy, seq=1)
    b.refused(
        "unknown-device",
        "a box whose key the gateway does not hold",
        _topic(STRANGER, "summary"),
        token,
        "unknown-device",
    )
    other_gateway = _key("another gateway")
    token, _ = b.seal("decrypt", A, healthy_kind, healthy, seq=51, sealer=b.sealer(A, gateway=other_gateway))
    b.refused("decrypt", "sealed to another gateway's key", s_a, token, "decrypt")
    token, _ = b.seal("signature", A, healthy_kind, healthy, seq=52, sealer=b.sealer(A, key=B))
    b.refused("signature", "kid amb-vec-01 but signed with amb-vec-02's key", s_a, token, "signature")
    base = _claims_of(first_claims, body=healthy, seq=53)
    b.refused(
        "mismatch",
        "the claims' device differs from the header's and the kid",
        s_a,
        b.raw("mismatch", A, _claims_of(base, device=B, jti=_parts("mismatch").message_id)),
        "mismatch",
    )
    for name, override, what in (
        ("claims-seq-fraction", {"seq": 54.0}, "seq 54.0: a JSON number with a fraction is no integer"),
        ("claims-iat-fraction", {"iat": float(int(NOW.timestamp()))}, "iat with a fraction"),
        ("claims-extra-key", {"extra": 1}, "a claim the contract does not have"),
        ("claims-kind-state", {"kind": "state"}, "kind state sealed (never sealed)"),
    ):
        claims = _claims_of(base, jti=_parts(name).message_id, **override)
        kind = "state" if name == "claims-kind-state" else "summary"
        reason = "kind-topic" if kind == "state" else "claims"
        b.refused(name, what, s_a, b.raw(name, A, claims, kind), reason)
    no_seq = {k: v for k, v in _claims_of(base, jti=_parts("no-sequence").message_id).items() if k != "seq"}
    b.refused("no-sequence", "the format before seq", s_a, b.raw("no-sequence", A, no_seq), "no-sequence")
    token, _ = b.seal("expired", A, healthy_kind, healthy, seq=55, at=NOW - MAX_AGE - timedelta(seconds=1))
    b.refused("expired", "synced clock, 7 days and 1 s old", s_a, token, "expired")
    token, _ = b.seal("future", A, healthy_kind, healthy, seq=56, at=NOW + MAX_SKEW + timedelta(seconds=1))
    b.refused("future", "synced clock, 5 min and 1 s ahead", s_a, token, "future")
    b.refused("device-topic", "amb-vec-01's message on amb-vec-02's topic", s_b, spare, "device-topic")
    b.refused("kind-topic", "a summary on the audit leaf", _topic(A, "audit"), spare, "kind-topic")
    forged = audit_body(A, time=NOW, message_id=first_claims["jti"], shown=shown)  # type: ignore[arg-type]
    token, _ = b.seal("device-body", B, Kind.AUDIT, forged, seq=1)
    b.refused(
        "device-body",
        "amb-vec-02 signs an audit record that says it is amb-vec-01's",
        _topic(B, "audit"),
        token,
        "device-body",
    )
    token, claims = b.seal("b-summary", B, healthy_kind, healthy, seq=1)
    b.accepted(
        "b-summary",
        "amb-vec-02's first message (its device-body forgery used up nothing)",
        s_b,
        token,
        claims,
    )
    b.vectors.append(
        Vector(
            "forget-b",
            "the operator retires amb-vec-02's key (mynabox receive --forget-device amb-vec-02): box lost",
            "",
            b"",
            {"forget_device": B},
        )
    )
    token, _ = b.seal("key-retired", B, healthy_kind, healthy, seq=2)
    b.refused("key-retired", "amb-vec-02 signs with its retired key", s_b, token, "key-retired")
    no_flags = {k: v for k, v in summary.items() if k != "flags"}
    token, _ = b.seal("body", A, summary_kind, no_flags, seq=57)
    b.refused("body", "a summary body without its flags", s_a, token, "body")
    reused = replace(_parts("message-id-reused"), message_id=str(first_claims["jti"]))
    token, _ = b.seal("message-id-reused", A, summary_kind, summary, seq=58, parts=reused)
    b.refused(
        "message-id-reused", "the first message's jti under another seq", s_a, token, "message-id-reused"
    )
    token, claims = b.seal("sequence-high", A, healthy_kind, healthy, seq=2000)
    b.accepted("sequence-high", "seq 2000: gaps are fine", s_a, token, claims)
    token, claims = b.seal("sequence-late", A, healthy_kind, healthy, seq=1500)
    b.accepted(
        "sequence-late", "seq 1500 after 2000: within the window of 1024, never seen", s_a, token, claims
    )
    token, _ = b.seal("sequence-reused", A, healthy_kind, healthy, seq=1500)
    b.refused("sequence-reused", "seq 1500 again with another jti", s_a, token, "sequence-reused")
    token, _ = b.seal("sequence-stale", A, healthy_kind, healthy, seq=976)
    b.refused("sequence-stale", "seq 976 = 2000 - 1024: behind the window", s_a, token, "sequence-stale")

    doc_out = {
        "description": " ".join(
            (
                "Apply the vectors in order to one receiver with a fresh state (no seen ids, no sequence",
                "numbers), its clock at `now`, max_age 7 days, max skew 5 minutes, the gateway key and the",
                "enrolled devices' public keys below. payload is the MQTT payload (ASCII); payload_repeat is",
                "`text` repeated `times` times. expect: accepted (with the opened claims), duplicate (drop,",
                "acknowledge), or refused with the reason's name; layer says where the refusal is decided",
                "(envelope: a bare JOSE opener refuses; claims: the claim checks; receiver: topic, body and",
                "replay rules). An entry with `action` instead of a message is an operator's step:",
                "forget_device retires the key the device's accepted messages were signed with.",
            )
        ),
        "now": NOW.isoformat().replace("+00:00", "Z"),
        "max_age_s": int(MAX_AGE.total_seconds()),
        "max_skew_s": int(MAX_SKEW.total_seconds()),
        "gateway_key": "keys/gateway-envelope-key.pem",
        "audit_key": "keys/audit-key",
        "device_keys": {d: f"keys/devices/{d}.pem" for d in (A, B)},
        "vectors": [v.to_json() for v in b.vectors],
    }
    files = {
        "vectors.json": (json.dumps(doc_out, ensure_ascii=False, indent=1) + "\n").encode("utf-8"),
        "keys/gateway-envelope-key.pem": private_key_pem(b.gateway).reveal(),
        "keys/gateway-envelope.pub.pem": public_key_pem(b.gateway),
        "keys/audit-key": audit_key,
    }
    for device in (A, B):
        files[f"keys/devices/{device}.pem"] = public_key_pem(b.devices[device])
        files[f"keys/device-private/{device}.pem"] = private_key_pem(b.devices[device]).reveal()
    return files
