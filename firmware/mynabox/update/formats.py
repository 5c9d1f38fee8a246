"""Whether the firmware in the other slot writes a state partition this firmware can still read.

The state partition is shared by both slots: after a rollback the previous firmware opens the outbox the new
one wrote. Each firmware declares its outbox schema and the oldest schema that can read it in
`mynabox/data/storage-formats.json` (tied to `adapters/outbox.py` by a test). `mynabox update install` reads
the new slot's copy once RAUC has written it and refuses, before any switch, a firmware whose outbox this
one could not read (the slot is marked bad, so it is never booted).

Pure: the file's text in, a decision out. The text comes from the new slot: hostile, bounded.
"""

from __future__ import annotations

import json
from typing import TypeGuard

from mynabox.record import record

MAX_BYTES = 4096
PATH = "mynabox/data/storage-formats.json"  # inside the firmware's site-packages


class FormatsError(Exception):
    """The new slot's declaration is missing or unreadable: the message says why."""


@record
class OutboxFormat:
    schema: int
    oldest_reader: int


def parse(text: str) -> OutboxFormat:
    if len(text) > MAX_BYTES:
        raise FormatsError(f"storage-formats.json is longer than {MAX_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise FormatsError("storage-formats.json is not JSON") from None
    outbox = data.get("outbox") if isinstance(data, dict) else None
    if not isinstance(outbox, dict):
        raise FormatsError("storage-formats.json has no outbox object")
    schema, oldest = outbox.get("schema"), outbox.get("oldest_reader")
    if not (_schema_number(schema) and _schema_number(oldest)):
        raise FormatsError("the outbox's schema and oldest_reader must be whole numbers from 1")
    if oldest > schema:
        raise FormatsError(f"oldest_reader {oldest} is newer than the schema {schema}")
    return OutboxFormat(schema, oldest)


def _schema_number(value: object) -> TypeGuard[int]:
    return type(value) is int and 1 <= value <= 1_000_000  # bool is an int subclass: refused by `is`


def refusal(new: OutboxFormat, *, running_schema: int) -> str | None:
    """Why this firmware (outbox schema `running_schema`) must not switch to `new`, or None."""
    if new.oldest_reader > running_schema:
        return (
            f"the new firmware's outbox (schema {new.schema}) needs a reader of schema {new.oldest_reader}:"
            f" this version (schema {running_schema}) could not read it after a rollback"
        )
    return None
