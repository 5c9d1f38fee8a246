"""payload.bodies: the receiver's body check answers every hostile body with a reason, never an exception
(a property test), and the device rule holds for any audit body."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mynabox.payload.bodies import BODY, DEVICE_BODY, body_problem, device_problem
from mynabox.payload.envelope import Kind
from mynabox_testkit.messages import audit_body, patient_body
from mynabox_testkit.patients import patient

NOW = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_SUMMARY = patient_body(patient("dialysis"), NOW)[1]
_AUDIT = audit_body("amb-1", time=NOW, message_id="ab" * 16, shown=["dialysis"])


def _paths(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*path, i))
    return out


def _replace(node: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}  # type: ignore[index]
    assert isinstance(node, list) and isinstance(head, int)
    return [*node[:head], _replace(node[head], rest, value), *node[head + 1 :]]


SUMMARY_PATHS = _paths(_SUMMARY)
AUDIT_PATHS = _paths(_AUDIT)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(list(Kind)), body=st.dictionaries(st.text(max_size=12), JSON, max_size=5))
def test_any_body_gets_a_reason_or_none(kind: Kind, body: dict[str, object]) -> None:
    assert body_problem(kind, "amb-1", body) in (None, BODY, DEVICE_BODY)
    assert device_problem(kind, "amb-1", body) in (None, DEVICE_BODY)


@settings(max_examples=200, deadline=None)
@given(index=st.integers(min_value=1, max_value=len(SUMMARY_PATHS) - 1), value=JSON)
def test_any_value_anywhere_in_a_real_summary_body(index: int, value: object) -> None:
    damaged = _replace(_SUMMARY, SUMMARY_PATHS[index], value)
    assert body_problem(Kind.SUMMARY, "amb-1", damaged) in (None, BODY)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(index=st.integers(min_value=1, max_value=len(AUDIT_PATHS) - 1), value=JSON)
def test_any_value_anywhere_in_a_real_audit_body(index: int, value: object) -> None:
    damaged = _replace(_AUDIT, AUDIT_PATHS[index], value)
    reason = body_problem(Kind.AUDIT, "amb-1", damaged)  # type: ignore[arg-type]
    assert reason in (None, BODY, DEVICE_BODY)
    record = damaged["record"]  # type: ignore[index]
    if isinstance(record, dict) and "device" in record and record["device"] != "amb-1":
        assert reason == DEVICE_BODY  # whatever else is wrong
