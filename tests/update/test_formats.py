"""The new slot's storage-formats.json, read as hostile input, and the decision it leads to."""

from __future__ import annotations

import json

import pytest

from mynabox.update import formats


def text(schema: object = 1, oldest: object = 1) -> str:
    return json.dumps({"outbox": {"schema": schema, "oldest_reader": oldest}})


@pytest.mark.parametrize(
    ("new", "running", "refused"),
    [
        ((1, 1), 1, False),  # the same format
        ((2, 1), 1, False),  # a newer schema that only adds: the old firmware still reads it
        ((2, 2), 1, True),  # not readable by schema 1 after a rollback
        ((3, 2), 2, False),
        ((1, 1), 2, False),  # a downgrade's older outbox: the older firmware reads its own schema
    ],
)
def test_a_firmware_whose_outbox_this_one_could_not_read_is_refused(
    new: tuple[int, int], running: int, refused: bool
) -> None:
    why = formats.refusal(formats.parse(text(*new)), running_schema=running)
    assert (why is not None) == refused
    if why:
        assert f"schema {new[0]}" in why and f"this version (schema {running})" in why


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "not JSON"),
        ("[" * 100_000, "longer than"),
        ("[" * 3000, "not JSON"),  # deep nesting within the size limit
        ("[]", "no outbox object"),
        ('{"outbox": 1}', "no outbox object"),
        (text(True, 1), "whole numbers"),  # bool is an int in Python: refused all the same
        (text(1.0, 1), "whole numbers"),
        (text(0, 0), "whole numbers"),
        (text(10**7, 1), "whole numbers"),
        (text("1", 1), "whole numbers"),
        (text(1, 2), "newer than the schema"),
        ('{"outbox": {"schema": 1}}', "whole numbers"),
    ],
)
def test_hostile_declarations_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(formats.FormatsError, match=reason):
        formats.parse(raw)
