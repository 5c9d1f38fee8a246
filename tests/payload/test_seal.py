"""Sealing and opening: known answers, round trips, a second implementation, and every way to be refused."""

from __future__ import annotations

import base64
import gc
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from hypothesis import given
from hypothesis import strategies as st

from mynabox.payload.envelope import MAX_MESSAGE_BYTES, EnvelopeError, Kind, Reason, SealError
from mynabox.payload.seal import MessageTooLarge, Opener, Sealer

from . import jose_peer as peer
from .conftest import DEVICE, MAX_AGE, MAX_SIZE, MAX_SKEW, NOW, OTHER, fixed_key
from .vectors.generate import seal_vector

VECTORS = json.loads((Path(__file__).parent / "vectors" / "seal.json").read_text(encoding="utf-8"))
BODY = {"patient": {"name": "山田 花子"}, "flags": ["anticoagulant"], "dose_mg": 2.5}


def _unb64(segment: str | bytes) -> bytes:
    data = segment.encode() if isinstance(segment, str) else segment
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _rejected(opener: Opener, token: bytes, *, now: datetime = NOW) -> Reason:
    with pytest.raises(EnvelopeError) as info:
        opener.open(token, now=now)
    assert str(info.value) == "envelope rejected"  # the same words whatever failed
    return info.value.reason


def _key(hex_scalar: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(hex_scalar, 16), ec.SECP256R1())


def _opener_for(v: dict[str, object]) -> Opener:
    return Opener(
        _key(str(v["gateway_d"])),
        {str(v["device_id"]): _key(str(v["device_d"])).public_key()},
        max_age=MAX_AGE,
        max_skew=MAX_SKEW,
        max_size=MAX_SIZE,
    )


# --- known answers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_reproduces_byte_for_byte(v: dict[str, object]) -> None:
    assert seal_vector(v).decode("ascii") == v["token"]


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_opens_with_both_implementations(v: dict[str, object]) -> None:
    token = str(v["token"]).encode("ascii")
    now = datetime.fromisoformat(str(v["now"]))
    opened = _opener_for(v).open(token, now=now)
    assert (opened.message_id, opened.device_id, opened.kind.value) == (
        v["message_id"],
        v["device_id"],
        v["kind"],
    )
    assert opened.body == v["body"]
    assert opened.clock_synced is v["clock_synced"]
    assert opened.created_at == now
    assert opened.seq == v["seq"]

    header, signed = peer.decrypt(token, _key(str(v["gateway_d"])))
    _, claims = peer.verify(signed, _key(str(v["device_d"])).public_key())
    assert claims["body"] == v["body"] and header["jti"] == v["message_id"]


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_parts_are_the_ones_used(v: dict[str, object]) -> None:
    """Recompute the JWE's key wrap and content encryption from first principles (RFC 7518 §4.6, §5.3)."""
    token = str(v["token"])
    header_b64, wrapped, iv, ciphertext, tag = token.split(".")
    header = json.loads(_unb64(header_b64))
    ephemeral = _key(str(v["ephemeral_d"]))
    gateway = _key(str(v["gateway_d"]))
    assert header["epk"]["x"] == peer.b64(ephemeral.public_key().public_numbers().x.to_bytes(32, "big"))

    shared = ephemeral.exchange(ec.ECDH(), gateway.public_key())
    other_info = (
        len(b"ECDH-ES+A256KW").to_bytes(4, "big")
        + b"ECDH-ES+A256KW"  # AlgorithmID
        + (0).to_bytes(4, "big")
        + (0).to_bytes(4, "big")  # empty apu, apv
        + (256).to_bytes(4, "big")  # keydatalen
    )
    kek = ConcatKDFHash(hashes.SHA256(), 32, other_info).derive(shared)
    cek = bytes.fromhex(str(v["cek"]))
    assert _unb64(wrapped) == aes_key_wrap(kek, cek)
    assert _unb64(iv) == bytes.fromhex(str(v["iv"]))
    plaintext = AESGCM(cek).decrypt(_unb64(iv), _unb64(ciphertext) + _unb64(tag), header_b64.encode("ascii"))
    assert plaintext.count(b".") == 2  # a compact JWS inside


def test_the_signature_is_the_library_s_deterministic_ecdsa(device_key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.backends.openssl.backend import backend

    from mynabox.payload.seal import _SIGNATURE

    assert backend.ecdsa_deterministic_supported()  # the build under us signs per RFC 6979
    constructed = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    for message in (b"", b"one", "二".encode() * 1000):
        ours = device_key.sign(message, _SIGNATURE)
        assert ours == device_key.sign(message, constructed) == device_key.sign(message, _SIGNATURE)
        device_key.public_key().verify(ours, message, ec.ECDSA(hashes.SHA256()))


def test_sealing_leaves_the_openssl_backend_module_unloaded() -> None:
    """The daemon seals every read; cryptography's backend module (≈ 0.35 MB) is not needed for it."""
    script = """
import sys
from datetime import UTC, datetime
from cryptography.hazmat.primitives.asymmetric import ec
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Sealer
device, gateway = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
Sealer("amb-0001", device, gateway.public_key()).seal(
    Kind.SUMMARY, {"a": 1}, now=datetime.now(UTC), clock_synced=True, seq=1
)
print(sorted(m for m in sys.modules if m.startswith("cryptography.hazmat.backends")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


T = TypeVar("T")


def left_for_the_collector(step: Callable[[], T]) -> tuple[T, list[str]]:
    """Run ``step`` with the collector off, then one full pass that keeps what it finds: the result and the
    types of everything only the collector would have freed (a reference cycle)."""
    gc.collect()
    gc.disable()
    try:
        result = step()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        return result, sorted({type(o).__qualname__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_seal_leaves_nothing_for_the_garbage_collector(sealer: Sealer, opener: Opener) -> None:
    """Everything a seal builds is freed when it returns: no reference cycle keeps the signed plaintext (the
    patient's data), the CEK or the segments until the collector's next full pass (joserfc's message and
    recipient point at each other)."""
    sealer.seal(Kind.SUMMARY, {"warm": "up"}, now=NOW, clock_synced=True, seq=1)
    sealed, left = left_for_the_collector(
        lambda: sealer.seal(Kind.SUMMARY, {"name": "テスト 太郎"}, now=NOW, clock_synced=True, seq=2)
    )
    assert left == []
    assert opener.open(sealed.token, now=NOW).body == {"name": "テスト 太郎"}


def test_an_open_leaves_nothing_for_the_garbage_collector(sealer: Sealer, opener: Opener) -> None:
    """The gateway's side: opening frees the decrypted plaintext at once, no message/recipient cycle keeps
    it until the collector's next full pass."""
    warm = sealer.seal(Kind.SUMMARY, {"warm": "up"}, now=NOW, clock_synced=True, seq=1)
    opener.open(warm.token, now=NOW)
    sealed = sealer.seal(Kind.SUMMARY, {"name": "テスト 太郎"}, now=NOW, clock_synced=True, seq=2)
    opened, left = left_for_the_collector(lambda: opener.open(sealed.token, now=NOW))
    assert left == []
    assert opened.body == {"name": "テスト 太郎"}


# --- round trips --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
bodies = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


@given(body=bodies, kind=st.sampled_from(Kind), synced=st.booleans())
def test_round_trip(
    sealer: Sealer, opener: Opener, body: dict[str, object], kind: Kind, synced: bool
) -> None:
    sealed = sealer.seal(kind, body, now=NOW, clock_synced=synced, seq=1)
    opened = opener.open(sealed.token, now=NOW + timedelta(seconds=30))
    assert opened.body == body
    assert (opened.message_id, opened.kind, opened.device_id) == (sealed.message_id, kind, DEVICE)
    assert opened.clock_synced is synced and opened.created_at == NOW


@given(body=bodies)
def test_second_implementation_opens_what_we_seal(
    sealer: Sealer,
    gateway_key: ec.EllipticCurvePrivateKey,
    device_key: ec.EllipticCurvePrivateKey,
    body: dict[str, object],
) -> None:
    sealed = sealer.seal(Kind.SUMMARY, body, now=NOW, clock_synced=True, seq=1)
    header, signed = peer.decrypt(sealed.token, gateway_key)
    jws_header, claims = peer.verify(signed, device_key.public_key())
    assert header["alg"] == "ECDH-ES+A256KW" and header["enc"] == "A256GCM" and header["cty"] == "JWT"
    assert (header["jti"], header["kind"], header["device"]) == (sealed.message_id, "summary", DEVICE)
    assert jws_header == {"alg": "ES256", "typ": "mynabox+jwt", "kid": DEVICE}
    assert claims == {
        "jti": sealed.message_id,
        "kind": "summary",
        "device": DEVICE,
        "iat": int(NOW.timestamp()),
        "clock_synced": True,
        "body": body,
        "seq": 1,
    }


def _claims(**override: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "jti": "ab" * 16,
        "kind": "summary",
        "device": DEVICE,
        "iat": int(NOW.timestamp()),
        "clock_synced": True,
        "body": BODY,
        "seq": 1,
    }
    claims.update(override)
    return claims


def _jwe_header(**override: object) -> dict[str, object]:
    header: dict[str, object] = {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "cty": "JWT",
        "jti": "ab" * 16,
        "kind": "summary",
        "device": DEVICE,
    }
    header.update(override)
    return {k: v for k, v in header.items() if v is not None}


def _jws_header(**override: object) -> dict[str, object]:
    header: dict[str, object] = {"alg": "ES256", "typ": "mynabox+jwt", "kid": DEVICE}
    header.update(override)
    return {k: v for k, v in header.items() if v is not None}


def _craft(
    gateway_key: ec.EllipticCurvePrivateKey,
    signer: object,
    *,
    claims: dict[str, object] | None = None,
    payload: bytes | None = None,
    jws_header: dict[str, object] | None = None,
    jwe_header: dict[str, object] | None = None,
    recipient: object | None = None,
) -> bytes:
    data = payload if payload is not None else json.dumps(claims or _claims(), ensure_ascii=False).encode()
    signed = peer.sign(data, signer, header=jws_header or _jws_header())
    return peer.encrypt(signed, recipient or gateway_key.public_key(), header=jwe_header or _jwe_header())


def test_we_open_what_the_second_implementation_seals(
    opener: Opener, gateway_key: ec.EllipticCurvePrivateKey, device_key: ec.EllipticCurvePrivateKey
) -> None:
    opened = opener.open(_craft(gateway_key, device_key), now=NOW)
    assert opened.body == BODY
    assert (opened.message_id, opened.device_id, opened.kind) == ("ab" * 16, DEVICE, Kind.SUMMARY)


def test_message_ids_are_unique(sealer: Sealer) -> None:
    ids = {sealer.seal(Kind.STATE, {}, now=NOW, clock_synced=True, seq=1).message_id for _ in range(200)}
    assert len(ids) == 200


def test_same_input_seals_differently(sealer: Sealer) -> None:
    one, two = (sealer.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1) for _ in range(2))
    assert one.token != two.token


def test_large_body_within_max_size_opens(
    sealer: Sealer, device_key: ec.EllipticCurvePrivateKey, gateway_key: ec.EllipticCurvePrivateKey
) -> None:
    body = {
        "drugs": ["インスリン グラルギン"] * 4000
    }  # ~240 kB sealed: past joserfc's default limits, within ours
    sealed = sealer.seal(Kind.SUMMARY, body, now=NOW, clock_synced=True, seq=1)
    roomy = Opener(
        gateway_key,
        {DEVICE: device_key.public_key()},
        max_age=MAX_AGE,
        max_skew=MAX_SKEW,
        max_size=len(sealed.token),
    )
    assert roomy.open(sealed.token, now=NOW).body == body
    small = Opener(
        gateway_key,
        {DEVICE: device_key.public_key()},
        max_age=MAX_AGE,
        max_skew=MAX_SKEW,
        max_size=len(sealed.token) - 1,
    )
    assert _rejected(small, sealed.token) is Reason.SIZE


def test_sealer_refuses_a_message_past_its_limit(
    device_key: ec.EllipticCurvePrivateKey, gateway_key: ec.EllipticCurvePrivateKey
) -> None:
    fits = Sealer(DEVICE, device_key, gateway_key.public_key()).seal(
        Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1
    )
    size = len(fits.token)
    at_limit = Sealer(DEVICE, device_key, gateway_key.public_key(), max_bytes=size)
    assert len(at_limit.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1).token) == size
    below = Sealer(DEVICE, device_key, gateway_key.public_key(), max_bytes=size - 1)
    with pytest.raises(MessageTooLarge) as info:
        below.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1)
    assert (info.value.size, info.value.limit) == (size, size - 1)
    assert "山田" not in str(info.value)
    # The default is the limit receivers and brokers share, and no sealer may go past it.
    big = {"drugs": ["インスリン グラルギン"] * 8000}
    with pytest.raises(MessageTooLarge):
        Sealer(DEVICE, device_key, gateway_key.public_key()).seal(
            Kind.SUMMARY, big, now=NOW, clock_synced=True, seq=1
        )
    with pytest.raises(SealError):
        Sealer(DEVICE, device_key, gateway_key.public_key(), max_bytes=MAX_MESSAGE_BYTES + 1)


def test_reprs_hold_no_patient_data_or_key(sealer: Sealer, opener: Opener) -> None:
    sealed = sealer.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1)
    opened = opener.open(sealed.token, now=NOW)
    for text in (repr(sealed), repr(opened), repr(sealer), repr(opener)):
        assert "山田" not in text and "anticoagulant" not in text and "PRIVATE" not in text


# --- refusals ----------------------------------------------------------------------------------------------


def test_every_flipped_byte_is_refused(sealer: Sealer, opener: Opener) -> None:
    token = sealer.seal(Kind.AUDIT, {"ok": True}, now=NOW, clock_synced=True, seq=1).token
    for position in range(len(token)):
        for mask in (0x01, 0x20):
            tampered = bytearray(token)
            tampered[position] ^= mask
            _rejected(opener, bytes(tampered))


@given(data=st.data())
def test_random_corruption_is_refused(sealer: Sealer, opener: Opener, data: st.DataObject) -> None:
    token = sealer.seal(Kind.AUDIT, {"n": 1}, now=NOW, clock_synced=True, seq=1).token
    cut = data.draw(st.integers(0, len(token) - 1))
    mutated = data.draw(
        st.sampled_from(
            [token[:cut], token[:cut] + token[cut + 1 :], token + b".", token + b"A", b" " + token]
        )
    )
    _rejected(opener, mutated)


def test_segments_swapped_between_two_messages_are_refused(sealer: Sealer, opener: Opener) -> None:
    one = sealer.seal(Kind.SUMMARY, {"a": 1}, now=NOW, clock_synced=True, seq=1).token.split(b".")
    two = sealer.seal(Kind.SUMMARY, {"a": 2}, now=NOW, clock_synced=True, seq=1).token.split(b".")
    for i in range(5):
        mixed = b".".join(two[j] if j == i else one[j] for j in range(5))
        _rejected(opener, mixed)


def test_wrong_gateway_key(device_key: ec.EllipticCurvePrivateKey, opener: Opener) -> None:
    stranger = Sealer(DEVICE, device_key, fixed_key(99).public_key())
    token = stranger.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1).token
    assert _rejected(opener, token) is Reason.DECRYPT


def test_unknown_device(gateway_key: ec.EllipticCurvePrivateKey, opener: Opener) -> None:
    token = (
        Sealer("amb-unknown", fixed_key(50), gateway_key.public_key())
        .seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1)
        .token
    )
    assert _rejected(opener, token) is Reason.UNKNOWN_DEVICE


def test_other_device_key_with_forged_kid(
    gateway_key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey, opener: Opener
) -> None:
    forger = Sealer(DEVICE, other_key, gateway_key.public_key())  # a known box pretending to be another
    token = forger.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1).token
    assert _rejected(opener, token) is Reason.SIGNATURE


@pytest.mark.parametrize(
    ("jws_header", "jwe_header", "claims"),
    [
        (_jws_header(kid=OTHER), _jwe_header(), _claims()),  # kid differs from the routing header
        (_jws_header(kid=OTHER), _jwe_header(device=OTHER), _claims()),  # claims name another device
        (_jws_header(), _jwe_header(jti="cd" * 16), _claims()),  # routing id is not the signed id
        (_jws_header(), _jwe_header(kind="audit"), _claims()),  # routing kind is not the signed kind
    ],
    ids=["kid-vs-header", "claims-device", "message-id", "kind"],
)
def test_layers_disagree(
    opener: Opener,
    gateway_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
    jws_header: dict[str, object],
    jwe_header: dict[str, object],
    claims: dict[str, object],
) -> None:
    signer = other_key if jws_header["kid"] == OTHER else fixed_key(1)
    token = _craft(gateway_key, signer, claims=claims, jws_header=jws_header, jwe_header=jwe_header)
    assert _rejected(opener, token) is Reason.MISMATCH


def test_expired_and_future(sealer: Sealer, opener: Opener) -> None:
    token = sealer.seal(Kind.SUMMARY, BODY, now=NOW, clock_synced=True, seq=1).token
    assert opener.open(token, now=NOW + MAX_AGE).message_id
    assert opener.open(token, now=NOW - MAX_SKEW).message_id
    assert _rejected(opener, token, now=NOW + MAX_AGE + timedelta(seconds=1)) is Reason.EXPIRED
    assert _rejected(opener, token, now=NOW - MAX_SKEW - timedelta(seconds=1)) is Reason.FUTURE


def test_unsynced_clock_is_not_judged_by_time(sealer: Sealer, opener: Opener) -> None:
    token = sealer.seal(
        Kind.SUMMARY, BODY, now=datetime.fromisoformat("1970-01-01T00:01:00+00:00"), clock_synced=False, seq=1
    ).token
    assert opener.open(token, now=NOW).clock_synced is False
    assert opener.open(token, now=NOW - timedelta(days=20000)).body == BODY


def test_oversized_input(opener: Opener) -> None:
    assert _rejected(opener, b"e" * (MAX_SIZE + 1)) is Reason.SIZE


def test_text_instead_of_bytes(sealer: Sealer, opener: Opener) -> None:
    token = sealer.seal(Kind.STATE, {}, now=NOW, clock_synced=True, seq=1).token
    assert _rejected(opener, token.decode("ascii")) is Reason.FORMAT  # type: ignore[arg-type]
    assert opener.open(bytearray(token), now=NOW).kind is Kind.STATE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "token",
    [b"", b"....", b"a.b.c.d.e", b"\xff\xfe.a.b.c.d", "日本語".encode(), b"eyJ9." * 5, b"x" * 100],
)
def test_garbage_is_refused(opener: Opener, token: bytes) -> None:
    _rejected(opener, token)


def test_alg_none_inner_signature(opener: Opener, gateway_key: ec.EllipticCurvePrivateKey) -> None:
    signed = peer.unsigned(json.dumps(_claims()).encode(), _jws_header(alg="none"))
    token = peer.encrypt(signed, gateway_key.public_key(), header=_jwe_header())
    assert _rejected(opener, token) is Reason.ALGORITHM


def test_hmac_with_the_public_key_as_secret(
    opener: Opener, gateway_key: ec.EllipticCurvePrivateKey, device_key: ec.EllipticCurvePrivateKey
) -> None:
    """The classic key-confusion attack: HS256 keyed with the (public) verification key's bytes."""
    from cryptography.hazmat.primitives import serialization
    from jwcrypto import jwk

    secret = device_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hmac_key = jwk.JWK(kty="oct", k=peer.b64(secret))
    from jwcrypto import jws

    inner = jws.JWS(json.dumps(_claims()).encode())
    inner.add_signature(hmac_key, protected=json.dumps(_jws_header(alg="HS256")))
    token = peer.encrypt(inner.serialize(compact=True), gateway_key.public_key(), header=_jwe_header())
    assert _rejected(opener, token) is Reason.ALGORITHM


def test_other_signature_algorithm(opener: Opener, gateway_key: ec.EllipticCurvePrivateKey) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = _craft(gateway_key, p384, jws_header=_jws_header(alg="ES384"))
    assert _rejected(opener, token) is Reason.ALGORITHM


@pytest.mark.parametrize(
    "override",
    [
        {"alg": "ECDH-ES", "enc": "A256GCM"},
        {"alg": "ECDH-ES+A128KW", "enc": "A256GCM"},
        {"alg": "ECDH-ES+A256KW", "enc": "A128GCM"},
        {"alg": "ECDH-ES+A256KW", "enc": "A256CBC-HS512"},
        {"zip": "DEF"},
        {"cty": "json"},
        {"cty": None},
        {"jku": "https://attacker.invalid/keys"},
        {"kid": "gateway"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_other_encryption_headers(
    opener: Opener,
    gateway_key: ec.EllipticCurvePrivateKey,
    device_key: ec.EllipticCurvePrivateKey,
    override: dict[str, object],
) -> None:
    token = _craft(gateway_key, device_key, jwe_header=_jwe_header(**override))
    assert _rejected(opener, token) is Reason.ALGORITHM


def test_rsa_encryption_is_refused(opener: Opener, device_key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = _craft(
        fixed_key(3), device_key, jwe_header=_jwe_header(alg="RSA-OAEP-256"), recipient=rsa_key.public_key()
    )
    assert _rejected(opener, token) is Reason.ALGORITHM


@pytest.mark.parametrize(
    "claims",
    [
        _claims(extra="x"),
        {k: v for k, v in _claims().items() if k != "iat"},
        _claims(iat="2026-04-01"),
        _claims(iat=1.5),
        _claims(iat=-1),
        _claims(clock_synced=1),
        _claims(body=["not", "an", "object"]),
        _claims(kind="prescription"),
        _claims(jti="short"),
    ],
    ids=[
        "extra",
        "missing",
        "iat-str",
        "iat-float",
        "iat-negative",
        "synced-int",
        "body-list",
        "kind",
        "jti",
    ],
)
def test_malformed_claims(
    opener: Opener,
    gateway_key: ec.EllipticCurvePrivateKey,
    device_key: ec.EllipticCurvePrivateKey,
    claims: dict[str, object],
) -> None:
    assert _rejected(opener, _craft(gateway_key, device_key, claims=claims)) is Reason.CLAIMS


@pytest.mark.parametrize("payload", [b"not json", b"[1,2]", b'{"a": NaN}', b"\xff\xfe", b"[" * 5000])
def test_malformed_json_payload(
    opener: Opener,
    gateway_key: ec.EllipticCurvePrivateKey,
    device_key: ec.EllipticCurvePrivateKey,
    payload: bytes,
) -> None:
    assert _rejected(opener, _craft(gateway_key, device_key, payload=payload)) is Reason.CLAIMS


def test_sealer_refuses_what_it_cannot_seal(sealer: Sealer, gateway_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(SealError):
        sealer.seal(Kind.SUMMARY, {"x": float("nan")}, now=NOW, clock_synced=True, seq=1)
    with pytest.raises(SealError):
        sealer.seal(Kind.SUMMARY, {"x": object()}, now=NOW, clock_synced=True, seq=1)
    with pytest.raises(SealError):
        sealer.seal(Kind.SUMMARY, {1: "x"}, now=NOW, clock_synced=True, seq=1)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="timezone-aware"):
        sealer.seal(Kind.SUMMARY, {}, now=datetime(2026, 1, 1), clock_synced=True, seq=1)
    with pytest.raises(SealError):
        Sealer("amb/01", fixed_key(1), gateway_key.public_key())
    with pytest.raises(SealError):
        Sealer(DEVICE, ec.generate_private_key(ec.SECP384R1()), gateway_key.public_key())  # type: ignore[arg-type]


def test_a_lone_surrogate_in_a_body_is_a_seal_error_not_a_unicode_error(sealer: Sealer) -> None:
    from mynabox.payload.envelope import SealError

    with pytest.raises(SealError):
        sealer.seal(Kind.SUMMARY, {"a": "\udc00"}, now=NOW, clock_synced=True, seq=1)
