"""Audit records and their hash chain (pure: the adapter appends the lines to disk and publishes them).

One record per card read: when, which box, unit and crew ids, consent mode, the outcome, the message it
produced and a keyed hash of the certificate - never a name, birth date or number. Fields that could carry
free text are held to ASCII identifiers, so patient data cannot slip in by mistake.

What the OLED showed (the flags, e.g. ``anticoagulant``) is health data: next to the card hash it would be
pseudonymised health data on the box for its whole life. So it is not in the local record nor in its chain
(format 2; format 1 lines, which held it, still verify). It travels only in the published audit message,
sealed to the gateway and signed with the chained entry (``published_body`` / ``PublishedAudit``).

Each entry's hash covers the previous hash and the canonical JSON of its record:
``H = SHA-256(prev_hash || canonical(record))`` or, when an audit key is provisioned,
``H = HMAC-SHA-256(audit_key, prev_hash || canonical(record))``. Why keyed: anyone who can write the log can
recompute an unkeyed chain after an edit; with a key kept apart from the log (a systemd credential), an edit
shows unless the attacker also holds the key. On a Pi without a secure element a root attacker may hold both,
so the strongest evidence is external: every record is also published, signed by the device, and the gateway
keeps the latest hash as an anchor (``expected_head``), which also catches a truncated tail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from mynabox.payload.envelope import is_device_id, is_message_id
from mynabox.payload.keys import Secret
from mynabox.record import record
from mynabox.vocab import ConsentMode, Outcome

FORMAT_VERSION = 2
_V1 = 1  # held ``items`` (the flags shown); read so an older log still verifies, never written
GENESIS = "0" * 64  # prev_hash of the first entry: a chain that starts elsewhere lost its head
_HASH = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")  # unit/crew ids, section names, flag codes
_CARD_HASH = re.compile(r"[A-Za-z0-9_:+/=.-]{1,128}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_MAX_ITEMS = 64


class AuditFormatError(ValueError):
    """An audit record or line is malformed; the message names the field, never its value."""


@record
class AuditRecord:
    time: datetime
    device_id: str
    unit_id: str | None
    crew_id: str | None
    consent: ConsentMode
    outcome: Outcome
    card_hash: str | None  # mynabox.card.identity.card_key_hash(...)
    clock_synced: bool
    message_id: str | None = None  # the sealed message this read produced (or the one purged)
    v1_items: tuple[str, ...] | None = None  # only on a record read from a format 1 line

    def __post_init__(self) -> None:
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise AuditFormatError("time must be a timezone-aware datetime")
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        object.__setattr__(self, "consent", ConsentMode(self.consent))
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        if self.v1_items is not None:
            object.__setattr__(self, "v1_items", tuple(self.v1_items))
        if not is_device_id(self.device_id):
            raise AuditFormatError("device_id is malformed")
        for name in ("unit_id", "crew_id"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and _TOKEN.fullmatch(value)):
                raise AuditFormatError(f"{name} must be an ASCII identifier")
        if self.v1_items is not None:
            check_items(self.v1_items)
        if self.card_hash is not None and not (
            isinstance(self.card_hash, str) and _CARD_HASH.fullmatch(self.card_hash)
        ):
            raise AuditFormatError("card_hash is malformed")
        if type(self.clock_synced) is not bool:
            raise AuditFormatError("clock_synced must be a bool")
        if self.message_id is not None and not is_message_id(self.message_id):
            raise AuditFormatError("message_id is malformed")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "v": FORMAT_VERSION,
            # isoformat pads the year to 4 digits; strftime's %Y does not (year 817 -> "817"), and a line
            # whose time does not parse back would not verify (found by fuzzing).
            "time": self.time.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z",
            "device": self.device_id,
            "unit": self.unit_id,
            "crew": self.crew_id,
            "consent": self.consent.value,
            "outcome": self.outcome.value,
            "card": self.card_hash,
            "clock_synced": self.clock_synced,
            "message": self.message_id,
        }
        if self.v1_items is not None:  # re-serialised exactly as written, so its hash still verifies
            out.update(v=_V1, items=list(self.v1_items))
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> AuditRecord:
        version = raw.get("v")
        v1 = type(version) is int and version == _V1
        if not (v1 or (type(version) is int and version == FORMAT_VERSION)):
            raise AuditFormatError("record version unexpected")
        if set(raw) != (_RECORD_KEYS | {"items"} if v1 else _RECORD_KEYS):
            raise AuditFormatError("record fields unexpected")
        time = raw["time"]
        if not (isinstance(time, str) and _TIME.fullmatch(time)):
            raise AuditFormatError("time is not canonical UTC")
        v1_items = None
        if v1:
            items = raw["items"]
            if not isinstance(items, list):
                raise AuditFormatError("items must be a list")
            v1_items = tuple(_str(i) for i in items)
        try:
            return cls(
                time=datetime.strptime(time, _TIME_FORMAT).replace(tzinfo=UTC),
                device_id=_str(raw["device"]),
                unit_id=_opt_str(raw["unit"]),
                crew_id=_opt_str(raw["crew"]),
                consent=ConsentMode(_str(raw["consent"])),
                outcome=Outcome(_str(raw["outcome"])),
                card_hash=_opt_str(raw["card"]),
                clock_synced=raw["clock_synced"],  # type: ignore[arg-type]  # checked in __post_init__
                message_id=_opt_str(raw["message"]),
                v1_items=v1_items,
            )
        except AuditFormatError:
            raise
        except ValueError as err:  # bad enum value or impossible date
            raise AuditFormatError("record has a value out of range") from err


_RECORD_KEYS = frozenset(
    {"v", "time", "device", "unit", "crew", "consent", "outcome", "card", "clock_synced", "message"}
)


def check_items(items: object) -> tuple[str, ...]:
    """What a result screen showed: section names or flag codes, never free text."""
    if not isinstance(items, list | tuple) or len(items) > _MAX_ITEMS:
        raise AuditFormatError("items must be a list of at most 64 section names or flag codes")
    if not all(isinstance(i, str) and _TOKEN.fullmatch(i) for i in items):
        raise AuditFormatError("items must be section names or flag codes (ASCII identifiers)")
    return tuple(items)


@record
class ChainedAudit:
    record: AuditRecord
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, object]:
        return {"record": self.record.to_dict(), "prev": self.prev_hash, "hash": self.hash}

    def to_json_line(self) -> str:
        """One line of the on-disk log (no trailing newline); also the body of the published audit message."""
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> ChainedAudit:
        if set(raw) != {"record", "prev", "hash"}:
            raise AuditFormatError("entry fields unexpected")
        record, prev, digest = raw["record"], raw["prev"], raw["hash"]
        if not isinstance(record, dict):
            raise AuditFormatError("record must be an object")
        if not (_is_hash(prev) and _is_hash(digest)):
            raise AuditFormatError("prev/hash must be 64 lowercase hex digits")
        return cls(AuditRecord.from_dict(record), str(prev), str(digest))

    @classmethod
    def from_json_line(cls, line: str | bytes) -> ChainedAudit:
        """Parse one log line, which must be byte for byte the canonical form ``to_json_line`` writes: the
        hash covers only that form, so a duplicated key, a second ``record`` or padding would be accepted
        bytes the chain does not vouch for."""
        try:
            data = line.encode("utf-8") if isinstance(line, str) else bytes(line)
            raw = json.loads(
                data, parse_float=_no_float, parse_constant=_no_float, object_pairs_hook=_unique_keys
            )
        except (ValueError, RecursionError) as err:  # UnicodeError is a ValueError
            raise AuditFormatError("line is not JSON (or holds a float or a duplicated key)") from err
        if not isinstance(raw, dict):
            raise AuditFormatError("line is not a JSON object")
        entry = cls.from_dict(raw)
        if entry.to_json_line().encode("utf-8") != data:
            raise AuditFormatError("line is not in canonical form (the bytes the hash covers)")
        return entry


@record
class PublishedAudit:
    """The body of an audit message for the gateway: the chained entry as on disk, plus what was shown.

    ``items`` is outside the chain (the box keeps no copy); the device's signature over the whole message
    binds it to the entry, and the gateway keeps both.
    """

    entry: ChainedAudit
    items: tuple[str, ...]

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> PublishedAudit:
        if not isinstance(raw, Mapping) or "shown" not in raw:
            raise AuditFormatError("published audit fields unexpected")
        entry = ChainedAudit.from_dict({k: v for k, v in raw.items() if k != "shown"})
        return cls(entry, check_items(raw["shown"]))


def published_body(entry: ChainedAudit, items: Iterable[str]) -> dict[str, object]:
    """``entry.to_dict()`` plus ``shown``: what was shown (only in the message sealed to the gateway)."""
    return {**entry.to_dict(), "shown": list(check_items(tuple(items)))}


@record
class ChainVerdict:
    ok: bool
    checked: int  # entries verified good before the first bad one (all of them when ok)
    first_bad_index: int | None  # len(entries) when only the anchor disagrees (tail missing)
    reason: str


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no floats: one byte string per value, for hashing."""
    _reject_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, record: AuditRecord, *, key: Secret[bytes] | None = None) -> str:
    if not _is_hash(prev_hash):
        raise AuditFormatError("prev_hash must be 64 lowercase hex digits")
    message = prev_hash.encode("ascii") + canonical_json(record.to_dict())
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key.reveal(), message, hashlib.sha256).hexdigest()


def chain(prev_hash: str, record: AuditRecord, *, key: Secret[bytes] | None = None) -> ChainedAudit:
    return ChainedAudit(record, prev_hash, entry_hash(prev_hash, record, key=key))


def verify_chain(
    entries: Iterable[ChainedAudit],
    *,
    key: Secret[bytes] | None = None,
    start: str = GENESIS,
    expected_head: str | None = None,
) -> ChainVerdict:
    """Check links and hashes from ``start``; stop at the first bad entry.

    Detects an edited entry (its hash), a deleted, inserted or reordered one (the next link), a lost head (the
    first link must be ``start``), and - given the last hash known elsewhere - a lost tail.
    """
    prev = start
    count = 0
    for index, entry in enumerate(entries):
        if entry.prev_hash != prev:
            reason = "does not start at the expected hash (head lost)" if index == 0 else "broken link"
            return ChainVerdict(False, index, index, f"{reason}: an entry is missing, inserted or moved")
        if not hmac.compare_digest(entry_hash(entry.prev_hash, entry.record, key=key), entry.hash):
            return ChainVerdict(
                False, index, index, "hash mismatch: the entry was altered (or the key differs)"
            )
        prev = entry.hash
        count = index + 1
    if expected_head is not None and not hmac.compare_digest(prev, expected_head):
        return ChainVerdict(False, count, count, "last hash differs from the anchor: entries lost at the end")
    return ChainVerdict(True, count, None, "ok")


def verify_lines(
    lines: Iterable[str | bytes],
    *,
    key: Secret[bytes] | None = None,
    start: str = GENESIS,
    expected_head: str | None = None,
) -> ChainVerdict:
    """``verify_chain`` over JSON lines; a malformed line is the first bad index. Blank lines are skipped."""
    entries: list[ChainedAudit] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            entries.append(ChainedAudit.from_json_line(line))
        except AuditFormatError as err:
            verdict = verify_chain(entries, key=key, start=start)
            if not verdict.ok:
                return verdict
            return ChainVerdict(False, len(entries), len(entries), f"malformed entry: {err}")
    return verify_chain(entries, key=key, start=start, expected_head=expected_head)


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise AuditFormatError("a field that must be a string is not")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicated key")
    return out


def _no_float(text: str) -> object:
    raise ValueError("floats are not allowed in audit lines")


def _reject_floats(value: object) -> None:
    if isinstance(value, float):
        raise AuditFormatError("floats are not allowed in canonical JSON")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)
