"""The MQTT topic scheme both sides speak: ``mynabox/<device>/<leaf>`` (docs/gateway/asyncapi.yaml).

The box builds topics with :func:`topic`; the gateway parses them with :func:`parse` and checks that a sealed
message's kind belongs on the leaf it came on (:data:`KINDS`). The device segment is an envelope device id
(``envelope.DEVICE_ID_PATTERN``), so a topic never carries more than the claims allow.
"""

from __future__ import annotations

from mynabox.payload.envelope import Kind, is_device_id

ROOT = "mynabox"
LEAVES = ("availability", "state", "summary", "audit")
# The leaves that carry sealed messages, and the kinds each may carry.
KINDS: dict[str, frozenset[Kind]] = {
    "summary": frozenset({Kind.SUMMARY, Kind.CARD_RECORD}),
    "audit": frozenset({Kind.AUDIT}),
}


def topic(device_id: str, leaf: str) -> str:
    if not is_device_id(device_id) or leaf not in LEAVES:
        raise ValueError("bad device id or topic leaf")
    return f"{ROOT}/{device_id}/{leaf}"


def subscription(leaf: str) -> str:
    """Every device's ``leaf`` (an MQTT wildcard filter)."""
    if leaf not in LEAVES:
        raise ValueError("bad topic leaf")
    return f"{ROOT}/+/{leaf}"


def parse(value: str) -> tuple[str, str] | None:
    """``(device, leaf)`` of a topic that carries sealed messages; None for any other string."""
    parts = value.split("/")
    if len(parts) != 3 or parts[0] != ROOT or parts[2] not in KINDS or not is_device_id(parts[1]):
        return None
    return parts[1], parts[2]
