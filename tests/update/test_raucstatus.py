"""`rauc status --output-format=json` read as hostile input."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.update import raucstatus, text

# As RAUC 1.8 printed it with our backend (tests/update/test_rauc_backend.py), with a detailed slot added.
SAMPLE = {
    "compatible": "mynabox-rpi-arm64",
    "variant": "",
    "booted": "A",
    "boot_primary": "rootfs.1",
    "slots": [
        {"rootfs.1": {"class": "rootfs", "device": "/dev/disk/by-partuuid/6d796e61-03", "type": "ext4",
                      "bootname": "B", "state": "inactive", "parent": None, "mountpoint": None,
                      "boot_status": "good",
                      "slot_status": {"bundle": {"compatible": "mynabox-rpi-arm64", "version": "0.2.0"},
                                      "installed": {"timestamp": "2026-12-06T22:52:48Z", "count": 1},
                                      "activated": {"timestamp": "2026-12-06T22:52:49Z", "count": 1},
                                      "status": "ok"}}},
        {"rootfs.0": {"class": "rootfs", "device": "/dev/disk/by-partuuid/6d796e61-02", "type": "ext4",
                      "bootname": "A", "state": "booted", "parent": None, "mountpoint": "/",
                      "boot_status": "good", "slot_status": {"bundle": {"compatible": None}}}},
    ],
}  # fmt: skip


def test_rauc_output_is_read() -> None:
    status = raucstatus.parse(json.dumps(SAMPLE))
    assert (status.booted, status.boot_primary) == ("A", "rootfs.1")
    b = status.slot("B")
    assert b is not None and (b.version, b.boot_status, b.installed) == (
        "0.2.0",
        "good",
        "2026-12-06T22:52:48Z",
    )
    a = status.slot("A")
    assert a is not None and (a.state, a.version) == ("booted", None)
    assert any("version 0.2.0" in line for line in raucstatus.describe(status))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"slots": {}}',
        '{"slots": [1]}',
        '{"slots": [{"a": 1, "b": 2}]}',
        '{"slots": [{"a": []}]}',
        '{"booted": 5, "slots": []}',
        '{"slots": [{"rootfs.0": {"bootname": ["A"]}}]}',
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"slots": [{f"s{i}": {}} for i in range(9)]}),
        " " * (raucstatus.MAX_BYTES + 1),
    ],
    ids=["empty", "text", "list", "slots-object", "slot-int", "two-keys", "body-list", "booted-int",
         "bootname-list", "deep", "too-many-slots", "too-long"],
)  # fmt: skip
def test_hostile_output_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(raucstatus.StatusError):
        raucstatus.parse(text)


def test_terminal_escapes_are_not_printed() -> None:
    status = raucstatus.parse(json.dumps({"compatible": "x\x1b]0;owned\x07" + "y" * 500, "slots": []}))
    assert status.compatible is not None
    assert "\x1b" not in status.compatible and "\x07" not in status.compatible
    assert len(status.compatible) <= text.MAX_TEXT + 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=20,
)


@given(JSON)
def test_any_json_is_read_or_refused(value: object) -> None:
    for doc in (value, {"slots": [value]}, {"slots": [{"rootfs.0": value}]}):
        with contextlib.suppress(raucstatus.StatusError):
            raucstatus.parse(json.dumps(doc))
