"""Message bodies by kind, as the gateway contract fixes them (docs/gateway/schemas): the box builds them
here (``read_body``, ``summary_body``, ``card_record_body``; the audit body is ``payload.audit``'s), and the
receiver checks them here.

``body_problem`` returns ``None`` for a body that is what its kind says, else the reason code the receiver
refuses it with:

- ``body``: the body is not the shape of its kind (keys, types, the 救急用サマリー, the read, the flags);
- ``device-body``: a field in the body names a device other than the signer. The signer (the JWS ``kid``,
  equal to the claims' ``device`` and the topic's) is the only device a message can speak for: an audit
  record whose ``record.device`` names another box, signed by a second box, is a forgery of the first
  box's audit trail. ``record.device`` is the only field of any body that names a device.

Pure: the same checks a JSON Schema validator makes with docs/gateway/schemas (tests tie the two on the
test vectors), plus the cross-field rule a schema cannot state.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime

from mynabox.card.certcheck import CertCheck
from mynabox.card.jpki import CardType
from mynabox.payload.audit import AuditFormatError, PublishedAudit
from mynabox.payload.envelope import Kind
from mynabox.summary.flags import DRUG_FLAGS, Flag, FlagCode, flags_json
from mynabox.summary.model import MAX_ITEMS, MAX_TEXT, YJ_CODE_RE, Summary, SummaryFormatError
from mynabox.vocab import ConsentMode

BODY = "body"
DEVICE_BODY = "device-body"

READ_KEYS = frozenset({"card_hash", "card_type", "certificate_check", "read_at", "consent"})
CERT_CHECK_KEYS = frozenset(
    {"status", "issuer_generation", "not_before", "not_after", "clock_synced", "is_auth_certificate"}
)
CARD_TYPES = frozenset({"my-number-card", "juki-card", "android-smartphone", "iphone", "unknown", "not-read"})
CERT_STATUSES = frozenset({"ok", "expired", "not-yet-valid", "untrusted", "malformed"})
CONSENTS = frozenset({"oral-consent", "life-saving-exception", "none"})
CARD_RECORD_REASONS = frozenset({"not-registered", "lookup-unavailable", "summary-too-large"})
_CARD_HASH = re.compile(r"[0-9a-f]{16}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_FLAG_ORDER = {code.value: i for i, code in enumerate(FlagCode)}
_MAX_CERTIFICATE_CHARS = 64 * 1024  # base64 of the largest certificate the card session reads (16 kB)


class _Bad(Exception):
    pass


def read_body(
    card_hash: str, card_type: CardType, check: CertCheck, read_at: datetime, consent: ConsentMode
) -> dict[str, object]:
    """The ``read`` member of both bodies: how the card was read (keyed hash, never the certificate's
    subject), the advisory chain check, when, and under which consent."""
    return {
        "card_hash": card_hash,
        "card_type": card_type.value,
        "certificate_check": check.as_dict(),
        "read_at": read_at.isoformat(),
        "consent": consent.value,
    }


def summary_body(summary: Summary, read: Mapping[str, object], shown: Iterable[Flag]) -> dict[str, object]:
    """Kind ``summary``: the 救急用サマリー, how the card was read, and the flags the box showed (with the
    items that raised each: the hospital sees what the crew saw)."""
    return {"summary": summary.to_json(), "read": dict(read), "flags": flags_json(shown)}


def card_record_body(certificate: bytes, reason: str, read: Mapping[str, object]) -> dict[str, object]:
    """Kind ``card-record``: no summary; the certificate lets the hospital repeat the lookup."""
    if reason not in CARD_RECORD_REASONS:
        raise ValueError("unknown card record reason")
    cert = base64.b64encode(certificate).decode("ascii")
    return {"card_record": {"certificate": cert, "reason": reason}, "read": dict(read)}


def device_problem(kind: Kind, device_id: str, body: Mapping[str, object]) -> str | None:
    """``device-body`` when a field that names a device names another than the signer (whatever else the body
    holds): the one check a relay that does not read bodies must still make."""
    record = body.get("record") if kind is Kind.AUDIT else None
    if isinstance(record, dict) and "device" in record and record["device"] != device_id:
        return DEVICE_BODY
    return None


def body_problem(kind: Kind, device_id: str, body: Mapping[str, object]) -> str | None:
    """``None``, or why the receiver refuses this body (``device-body`` first, then ``body``)."""
    if device_problem(kind, device_id, body) is not None:
        return DEVICE_BODY
    try:
        if kind is Kind.SUMMARY:
            _summary_body(body)
        elif kind is Kind.CARD_RECORD:
            _card_record_body(body)
        elif kind is Kind.AUDIT:
            if _audit_device(body) != device_id:
                return DEVICE_BODY
        else:  # state is never sealed
            return BODY
    except (_Bad, AuditFormatError, SummaryFormatError):
        return BODY
    return None


def _summary_body(body: Mapping[str, object]) -> None:
    _keys(body, frozenset({"summary", "read", "flags"}))
    summary = body["summary"]
    if not isinstance(summary, dict):
        raise _Bad
    Summary.from_json(summary)
    _read(body["read"])
    _flags(body["flags"])


def _card_record_body(body: Mapping[str, object]) -> None:
    _keys(body, frozenset({"card_record", "read"}))
    record = body["card_record"]
    _keys(record, frozenset({"certificate", "reason"}))
    assert isinstance(record, dict)
    cert, reason = record["certificate"], record["reason"]
    if not (
        isinstance(cert, str) and 0 < len(cert) <= _MAX_CERTIFICATE_CHARS and _in(reason, CARD_RECORD_REASONS)
    ):
        raise _Bad
    try:
        base64.b64decode(cert, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad from None
    _read(body["read"])


def _audit_device(body: Mapping[str, object]) -> str:
    published = PublishedAudit.from_dict(body)
    card = published.entry.record.card_hash
    if not all(item in _FLAG_ORDER for item in published.items) or not (
        card is None or _CARD_HASH.fullmatch(card)
    ):
        raise _Bad
    return published.entry.record.device_id


def _read(read: object) -> None:
    _keys(read, READ_KEYS)
    assert isinstance(read, dict)
    check = read["certificate_check"]
    _keys(check, CERT_CHECK_KEYS)
    assert isinstance(check, dict)
    if not (
        isinstance(read["card_hash"], str)
        and _CARD_HASH.fullmatch(read["card_hash"])
        and _in(read["card_type"], CARD_TYPES)
        and _in(read["consent"], CONSENTS)
        and _is_time(read["read_at"])
        and _in(check["status"], CERT_STATUSES)
        and (check["issuer_generation"] is None or _is_text(check["issuer_generation"]))
        and (check["not_before"] is None or _is_time(check["not_before"]))
        and (check["not_after"] is None or _is_time(check["not_after"]))
        and type(check["clock_synced"]) is bool
        and type(check["is_auth_certificate"]) is bool
    ):
        raise _Bad


def _flags(flags: object) -> None:
    """The flags the box showed, in the OLED's order, each once, each with the items that raised it."""
    if not isinstance(flags, list):
        raise _Bad
    order = []
    for flag in flags:
        _keys(flag, frozenset({"code", "label", "items"}))
        assert isinstance(flag, dict)
        code, items = flag["code"], flag["items"]
        if not (isinstance(code, str) and code in _FLAG_ORDER and _is_text(flag["label"])):
            raise _Bad
        if not (isinstance(items, list) and 0 < len(items) <= MAX_ITEMS):
            raise _Bad
        check = _ITEM_CHECKS["drug" if FlagCode(code) in DRUG_FLAGS else code]
        for item in items:
            check(item)
        order.append(_FLAG_ORDER[code])
    if order != sorted(set(order)):
        raise _Bad


def _drug_item(item: object) -> None:
    _keys(item, frozenset({"section", "drug_name", "yj_code", "date"}))
    assert isinstance(item, dict)
    yj = item["yj_code"]
    if not (
        _in(item["section"], {"medications", "dispensings"})
        and _is_text(item["drug_name"])
        and (yj is None or (isinstance(yj, str) and YJ_CODE_RE.match(yj)))
        and _is_date(item["date"])
    ):
        raise _Bad


def _dialysis_item(item: object) -> None:
    _keys(item, frozenset({"section", "kind", "facility", "last_date", "sessions"}))
    assert isinstance(item, dict)
    sessions = item["sessions"]
    if not (
        item["section"] == "dialyses"
        and _in(item["kind"], {"hemodialysis", "peritoneal"})
        and _is_text(item["facility"])
        and _is_date(item["last_date"])
        and type(sessions) is int
        and 1 <= sessions <= MAX_ITEMS
    ):
        raise _Bad


def _allergy_item(item: object) -> None:
    _keys(item, frozenset({"section", "substance", "category", "reaction"}))
    assert isinstance(item, dict)
    if not (
        item["section"] == "allergies"
        and _is_text(item["substance"])
        and _in(item["category"], {"drug", "food", "other"})
        and (item["reaction"] is None or _is_text(item["reaction"]))
    ):
        raise _Bad


def _surgery_item(item: object) -> None:
    _keys(item, frozenset({"section", "procedure", "facility", "date"}))
    assert isinstance(item, dict)
    if not (
        item["section"] == "surgeries"
        and _is_text(item["procedure"])
        and _is_text(item["facility"])
        and _is_date(item["date"])
    ):
        raise _Bad


_ITEM_CHECKS: dict[str, Callable[[object], None]] = {
    "drug": _drug_item,
    FlagCode.DIALYSIS.value: _dialysis_item,
    FlagCode.ALLERGY.value: _allergy_item,
    FlagCode.SURGERY.value: _surgery_item,
}


def _in(value: object, options: frozenset[str] | set[str]) -> bool:
    """Membership without a TypeError for an unhashable value (a list where a string belongs)."""
    return isinstance(value, str) and value in options


def _keys(value: object, keys: frozenset[str]) -> None:
    if not (isinstance(value, dict) and value.keys() == keys):
        raise _Bad


def _is_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _is_date(value: object) -> bool:
    if not (isinstance(value, str) and _DATE.fullmatch(value)):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_time(value: object) -> bool:
    """RFC 3339 date-time with an offset (what ``datetime.isoformat`` writes for an aware time)."""
    if not (
        isinstance(value, str)
        and len(value) <= 40
        and re.fullmatch(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)", value)
    ):
        return False
    try:
        return datetime.fromisoformat(value).utcoffset() is not None
    except ValueError:
        return False
