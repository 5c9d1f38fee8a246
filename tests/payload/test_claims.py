"""Validly signed envelopes with any claim values: the opener refuses with EnvelopeError, never anything else.

A box holding its own key can sign whatever claims it likes; before this, ``iat`` at or past year 9999 (or an
unhashable ``kind``) raised outside the opener's error handling and stalled the gateway receiver.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mynabox.payload.envelope import MAX_IAT, EnvelopeError, Reason
from mynabox.payload.seal import Opener, Sealer
from support.envelopes import seal_claims

from .conftest import DEVICE, NOW

JST = timezone(timedelta(hours=9))

VALID: dict[str, object] = {
    "jti": "cd" * 16,
    "kind": "summary",
    "device": DEVICE,
    "iat": int(NOW.timestamp()),
    "clock_synced": True,
    "body": {"n": 1},
    "seq": 1,
}

# Values that sit at the edges of Python's and datetime's ranges, then anything JSON can hold.
EDGES = [
    253402300799,  # 9999-12-31T23:59:59Z: the last datetime second (its JST is year 10000)
    253402300800,  # year 10000
    2**40 - 1,
    2**63,
    2**64,
    10**30,
    -1,
    -(2**63),
    0,
    1,
    MAX_IAT,
    MAX_IAT + 1,
    1.0,
    1e308,
    float("inf"),
    float("nan"),
    True,
    False,
    None,
    "",
    "1",
    [],
    {},
    ["summary"],
    {"summary": 1},
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**30, max_value=2**80)
    | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
hostile_values = st.sampled_from(EDGES) | json_values


@st.composite
def hostile_claims(draw: st.DrawFn) -> dict[str, object]:
    claims = dict(VALID)
    for key in draw(st.sets(st.sampled_from(sorted(VALID)), min_size=1)):
        if draw(st.integers(0, 9)) == 0:
            del claims[key]
        else:
            claims[key] = draw(hostile_values)
    if draw(st.integers(0, 9)) == 0:
        claims[draw(st.text(max_size=6))] = draw(hostile_values)
    synced = draw(st.sampled_from([True, False, "keep"]))
    if synced != "keep" and "clock_synced" in claims:
        claims["clock_synced"] = synced  # unsynced messages skip the age check: the old hole
    return claims


def _open_or_refuse(opener: Opener, token: bytes) -> None:
    try:
        opened = opener.open(token, now=NOW)
    except EnvelopeError:
        return
    # What opens must be usable downstream: times in range for the operator's local time.
    opened.created_at.astimezone(JST).isoformat()
    assert opened.seq >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims=hostile_claims())
def test_no_claim_value_makes_the_opener_raise_anything_else(
    sealer: Sealer, opener: Opener, claims: dict[str, object]
) -> None:
    _open_or_refuse(opener, seal_claims(sealer, claims))


@pytest.mark.parametrize("synced", [True, False])
@pytest.mark.parametrize("iat", [253402300799, 253402300800, 2**40 - 1, MAX_IAT + 1])
def test_far_future_iat_is_refused_as_claims(sealer: Sealer, opener: Opener, iat: int, synced: bool) -> None:
    token = seal_claims(sealer, {**VALID, "iat": iat, "clock_synced": synced})
    with pytest.raises(EnvelopeError) as info:
        opener.open(token, now=NOW)
    assert info.value.reason is Reason.CLAIMS


def test_last_allowed_iat_opens_and_renders(sealer: Sealer, opener: Opener) -> None:
    opened = opener.open(seal_claims(sealer, {**VALID, "iat": MAX_IAT, "clock_synced": False}), now=NOW)
    assert opened.created_at.astimezone(JST).year == 2106


@pytest.mark.parametrize("kind", [["summary"], {"k": 1}, 1, None])
def test_unhashable_or_odd_kind_is_refused(sealer: Sealer, opener: Opener, kind: object) -> None:
    with pytest.raises(EnvelopeError):
        opener.open(seal_claims(sealer, {**VALID, "kind": kind}), now=NOW)


@pytest.mark.parametrize("seq", [0, -1, 2**63, True, 1.0, "1", None, [1]])
def test_malformed_sequence_is_refused(sealer: Sealer, opener: Opener, seq: object) -> None:
    with pytest.raises(EnvelopeError) as info:
        opener.open(seal_claims(sealer, {**VALID, "seq": seq}), now=NOW)
    assert info.value.reason is Reason.CLAIMS


def test_old_format_without_sequence_is_refused_with_its_own_reason(sealer: Sealer, opener: Opener) -> None:
    old = {k: v for k, v in VALID.items() if k != "seq"}
    with pytest.raises(EnvelopeError) as info:
        opener.open(seal_claims(sealer, old), now=NOW)
    assert info.value.reason is Reason.NO_SEQUENCE


def test_largest_sequence_opens(sealer: Sealer, opener: Opener) -> None:
    assert opener.open(seal_claims(sealer, {**VALID, "seq": 2**63 - 1}), now=NOW).seq == 2**63 - 1
