"""`rauc status --detailed --output-format=json`, read as hostile input: bounded, typed, printable.

RAUC's output (seen from RAUC 1.8 with our custom backend): {"compatible", "variant", "booted" (bootname),
"boot_primary" (slot name), "slots": [{"rootfs.0": {"bootname", "state", "boot_status", "device", …,
"slot_status": {"bundle": {"version", …}, "installed": {"timestamp", "count"}, "activated": {…},
"status"}}}]}. Anything else is refused with a reason, never an exception other than StatusError.
"""

from __future__ import annotations

import json
from typing import Any

from mynabox.record import record
from mynabox.update.text import printable

MAX_BYTES = 256 * 1024
MAX_SLOTS = 8


class StatusError(Exception):
    """RAUC's status could not be read."""


@record
class Slot:
    name: str
    bootname: str | None
    state: str | None  # booted / active / inactive
    boot_status: str | None  # good / bad
    version: str | None
    installed: str | None  # RAUC's timestamp of the last install into the slot
    activated: str | None


@record
class Status:
    compatible: str | None
    booted: str | None
    boot_primary: str | None
    slots: tuple[Slot, ...]

    def slot(self, bootname: str) -> Slot | None:
        return next((s for s in self.slots if s.bootname == bootname), None)


def parse(text: str) -> Status:
    if len(text) > MAX_BYTES:
        raise StatusError(f"rauc status output longer than {MAX_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise StatusError(f"rauc status output is not JSON ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise StatusError("rauc status output is not a JSON object")
    raw_slots = data.get("slots")
    if not isinstance(raw_slots, list) or len(raw_slots) > MAX_SLOTS:
        raise StatusError(f"rauc status: 'slots' is not a list of at most {MAX_SLOTS}")
    slots: list[Slot] = []
    for entry in raw_slots:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise StatusError("rauc status: a slot entry is not {name: {...}}")
        ((name, body),) = entry.items()
        if not isinstance(body, dict):
            raise StatusError("rauc status: a slot's details are not an object")
        detail = body.get("slot_status")
        detail = detail if isinstance(detail, dict) else {}
        slots.append(
            Slot(
                name=printable(name),
                bootname=_text(body, "bootname"),
                state=_text(body, "state"),
                boot_status=_text(body, "boot_status"),
                version=_text(_object(detail, "bundle"), "version"),
                installed=_text(_object(detail, "installed"), "timestamp"),
                activated=_text(_object(detail, "activated"), "timestamp"),
            )
        )
    return Status(
        compatible=_text(data, "compatible"),
        booted=_text(data, "booted"),
        boot_primary=_text(data, "boot_primary"),
        slots=tuple(slots),
    )


def describe(status: Status) -> list[str]:
    lines = [
        f"compatible: {status.compatible or '-'}",
        f"rauc booted: {status.booted or '-'}, primary: {status.boot_primary or '-'}",
    ]
    for slot in status.slots:
        lines.append(
            f"slot {slot.name} ({slot.bootname or '-'}): {slot.state or '-'}, "
            f"boot {slot.boot_status or '-'}, version {slot.version or '-'}, "
            f"installed {slot.installed or '-'}, activated {slot.activated or '-'}"
        )
    return lines


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StatusError(f"rauc status: {printable(key, 40)!r} is not a string")
    return printable(value)
