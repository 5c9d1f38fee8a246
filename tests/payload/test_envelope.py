"""Envelope format helpers: ids, deterministic JSON, claims parsing."""

from __future__ import annotations

import pytest

from mynabox.payload.envelope import Claims, EnvelopeError, Kind, Reason, SealError, encode_json, is_device_id


@pytest.mark.parametrize("value", ["amb-01", "a", "0", "x" * 32, "unit-3b"])
def test_good_device_ids(value: str) -> None:
    assert is_device_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 33,
        "amb/01",
        "amb+",
        "#",
        "-amb",
        ".amb",
        "amb 01",
        "救急1",
        "A",
        "Amb-01",
        "unit_3.b",
        "a.b",
        7,
    ],
)
def test_bad_device_ids(value: object) -> None:
    assert not is_device_id(value)


def test_kinds_are_the_topic_leaves() -> None:
    assert [k.value for k in Kind] == ["summary", "card-record", "audit", "state"]


def test_encode_json_is_deterministic_utf8() -> None:
    assert encode_json({"b": 1, "a": "薬"}) == '{"a":"薬","b":1}'.encode()
    with pytest.raises(SealError):
        encode_json({"x": float("inf")})


def test_claims_round_trip_and_error_is_opaque() -> None:
    claims = Claims("ab" * 16, Kind.AUDIT, "amb-01", 1_700_000_000, False, {"k": [1, 2]}, seq=7)
    assert Claims.from_json(claims.to_json()) == claims
    assert "[1, 2]" not in repr(claims)
    with pytest.raises(EnvelopeError) as info:
        Claims.from_json(b'{"jti": 1}')
    assert info.value.reason is Reason.CLAIMS and str(info.value) == "envelope rejected"
