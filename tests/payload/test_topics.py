"""The topic scheme both sides speak."""

from __future__ import annotations

import pytest

from mynabox.payload.envelope import Kind
from mynabox.payload.topics import KINDS, parse, subscription, topic


def test_parse() -> None:
    assert parse("mynabox/a-1/summary") == ("a-1", "summary")
    assert parse("mynabox/a-1/audit") == ("a-1", "audit")
    for bad in ("mynabox/+/summary", "mynabox//summary", "mynabox/a/b/summary", "mynabox/a/availability"):
        assert parse(bad) is None


def test_topics_are_built_only_from_a_device_id_and_a_leaf() -> None:
    assert topic("a-1", "state") == "mynabox/a-1/state"
    assert subscription("audit") == "mynabox/+/audit"
    assert parse(topic("a-1", "summary")) == ("a-1", "summary")
    for device, leaf in (("+", "summary"), ("a/b", "state"), ("A", "state"), ("a", "other")):
        with pytest.raises(ValueError, match="bad"):
            topic(device, leaf)
    assert set(KINDS["summary"]) | set(KINDS["audit"]) == set(Kind) - {Kind.STATE}
