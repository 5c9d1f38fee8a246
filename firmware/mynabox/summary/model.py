"""The 救急用サマリー (emergency summary) as frozen values, and its JSON form.

The JSON form is the wire format of the summary API (docs/summary-api.openapi.yaml) and is published as
a JSON Schema (mynabox/data/summary.schema.json). `Summary.from_json` is strict: unknown keys, missing keys,
wrong types, bad dates or oversized lists raise `SummaryFormatError`, which names the JSON path and the
problem but never the offending value (it may be patient data).

Windows as the national service defines them: 受診歴 3 months, 電子処方箋 dispensing 45 days, 薬剤 3 months,
手術 5 years, 診療 3 months, 透析 3 months. The model carries whatever the service sent; the windows are
the service's business (and the synthetic patients', see mynabox_testkit.patients).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import date
from enum import Enum, IntEnum
from typing import Any, TypeVar

from mynabox.record import record

SCHEMA_VERSION = 1

# Bounds that keep a hostile document from costing much; real summaries are far below them.
MAX_TEXT = 200
MAX_ITEMS = 1000

_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# YJ code (個別医薬品コード): 12 characters, digits 1-4 the 薬効分類, 5-7 the ingredient, 8 the dosage form.
YJ_CODE_RE = re.compile(r"^[0-9]{4}[0-9A-Z]{8}$")
# 保険者番号: 6 digits (国民健康保険) or 8 digits (the others).
INSURER_RE = re.compile(r"^(?:[0-9]{6}|[0-9]{8})$")
_KEY_RE = re.compile(r"^[a-z_]{1,40}$")

T = TypeVar("T")


class SummaryFormatError(ValueError):
    """A summary document that does not follow the format; names the path, never the value."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class Sex(IntEnum):
    """Sex code as in the insurance records: 1 male, 2 female, 9 not applicable / unknown."""

    MALE = 1
    FEMALE = 2
    UNKNOWN = 9


class AllergyCategory(Enum):
    DRUG = "drug"
    FOOD = "food"
    OTHER = "other"


class DialysisKind(Enum):
    HEMODIALYSIS = "hemodialysis"
    PERITONEAL = "peritoneal"


@record
class Patient:
    name: str
    kana: str
    birth_date: date
    sex: Sex
    insurer_number: str


@record
class Visit:
    """受診歴: one visit to a facility (3 months)."""

    date: date
    facility: str
    department: str
    inpatient: bool


@record
class Dispensing:
    """電子処方箋: one dispensed item (45 days)."""

    date: date
    drug_name: str
    yj_code: str | None
    dose: str
    days: int
    pharmacy: str


@record
class Medication:
    """薬剤: one prescribed drug from the claims (3 months)."""

    date: date
    drug_name: str
    yj_code: str | None
    dose: str
    days: int
    prescriber: str
    pharmacy: str | None


@record
class Surgery:
    """手術: one operation (5 years)."""

    date: date
    procedure: str
    facility: str


@record
class Treatment:
    """診療: one procedure or examination (3 months)."""

    date: date
    description: str
    facility: str


@record
class Dialysis:
    """透析: one session (3 months)."""

    date: date
    kind: DialysisKind
    facility: str


@record
class Allergy:
    substance: str
    category: AllergyCategory
    reaction: str | None


@record
class Contraindication:
    drug_name: str
    reason: str


@record
class AllergySection:
    """From the 電子カルテ情報共有サービス. Empty tuples mean "none recorded"."""

    allergies: tuple[Allergy, ...]
    contraindications: tuple[Contraindication, ...]


@record
class Summary:
    as_of: date
    patient: Patient
    visits: tuple[Visit, ...]
    dispensings: tuple[Dispensing, ...]
    medications: tuple[Medication, ...]
    surgeries: tuple[Surgery, ...]
    treatments: tuple[Treatment, ...]
    dialyses: tuple[Dialysis, ...]
    last_checkup: date | None
    # None: the section is not available for this patient (not the same as "no allergies recorded").
    allergies: AllergySection | None

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **_write(self)}

    @classmethod
    def from_json(cls, doc: object) -> Summary:
        d = _obj(doc, "$", _KEYS[Summary] | {"schema_version"})
        _int(d["schema_version"], "$.schema_version", SCHEMA_VERSION, SCHEMA_VERSION)
        return _build(Summary, d, "$")


# --- strict reading --------------------------------------------------------------------------------------


def _obj(value: object, path: str, keys: frozenset[str]) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise SummaryFormatError(path, "expected an object")
    for key in value:
        if key not in keys:
            shown = key if isinstance(key, str) and _KEY_RE.fullmatch(key) else "(unprintable)"
            raise SummaryFormatError(path, f"unexpected key {shown}")
    for key in sorted(keys):
        if key not in value:
            raise SummaryFormatError(f"{path}.{key}", "missing")
    return value


def _text(value: object, path: str, max_len: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise SummaryFormatError(path, "expected a string")
    # U+FEFF counts as white space here as it does in the schema's (ECMA-262) patterns.
    if not value.replace("\ufeff", " ").strip():
        raise SummaryFormatError(path, "empty string")
    if len(value) > max_len:
        raise SummaryFormatError(path, f"longer than {max_len} characters")
    # Control characters garble the OLED and logs; a lone surrogate cannot be encoded as UTF-8 later.
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise SummaryFormatError(path, "control character or unpaired surrogate")
    return value


def _pattern(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise SummaryFormatError(path, f"expected {what}")
    return value


def _date(value: object, path: str) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise SummaryFormatError(path, "expected a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SummaryFormatError(path, "not a calendar date") from None


def _int(value: object, path: str, low: int, high: int) -> int:
    # bool is an int in Python but not in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise SummaryFormatError(path, "expected an integer")
    if not low <= value <= high:
        raise SummaryFormatError(path, f"out of range {low}..{high}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise SummaryFormatError(path, "expected true or false")
    return value


def _list(value: object, path: str, item: Callable[[object, str], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise SummaryFormatError(path, "expected an array")
    if len(value) > MAX_ITEMS:
        raise SummaryFormatError(path, f"more than {MAX_ITEMS} items")
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


def _enum(value: object, path: str, enum: type[Enum]) -> Any:
    for member in enum:
        if member.value == value and type(member.value) is type(value):
            return member
    raise SummaryFormatError(path, "not one of the allowed values")


def _yj(value: object, path: str) -> str | None:
    return None if value is None else _pattern(value, path, YJ_CODE_RE, "a 12-character YJ code")


# --- one field table per record: how each field is read (strictly) and written ---------------------------


@record
class _Codec:
    read: Callable[[object, str], Any]
    write: Callable[[Any], object] = lambda value: value


def _bounded(low: int, high: int) -> _Codec:
    return _Codec(lambda v, p: _int(v, p, low, high))


def _short_text(max_len: int) -> _Codec:
    return _Codec(lambda v, p: _text(v, p, max_len))


def _choice(enum: type[Enum]) -> _Codec:
    return _Codec(lambda v, p: _enum(v, p, enum), lambda member: member.value)


def _record(cls: type[Any]) -> _Codec:
    return _Codec(lambda v, p: _build(cls, _obj(v, p, _KEYS[cls]), p), _write)


def _optional(codec: _Codec) -> _Codec:
    return _Codec(
        lambda v, p: None if v is None else codec.read(v, p),
        lambda value: None if value is None else codec.write(value),
    )


def _many(cls: type[Any]) -> _Codec:
    item = _record(cls)
    return _Codec(lambda v, p: _list(v, p, item.read), lambda values: [_write(x) for x in values])


def _build(cls: type[T], d: Mapping[str, object], path: str) -> T:
    table = _FIELDS[cls]
    return cls(**{name: codec.read(d[name], f"{path}.{name}") for name, codec in table.items()})


def _write(record: object) -> dict[str, Any]:
    table = _FIELDS[type(record)]
    return {name: codec.write(getattr(record, name)) for name, codec in table.items()}


_TEXT = _Codec(_text)
_DATE = _Codec(_date, date.isoformat)
_BOOL = _Codec(_bool)
_DAYS = _bounded(1, 366)
_YJ = _Codec(_yj)
_INSURER = _Codec(lambda v, p: _pattern(v, p, INSURER_RE, "6 or 8 digits"))

# Written in the dataclass's field order (checked below): it is the order of the JSON keys and of the checks.
_FIELDS: dict[type[Any], dict[str, _Codec]] = {
    Patient: {
        "name": _short_text(100),
        "kana": _short_text(100),
        "birth_date": _DATE,
        "sex": _choice(Sex),
        "insurer_number": _INSURER,
    },
    Visit: {"date": _DATE, "facility": _TEXT, "department": _TEXT, "inpatient": _BOOL},
    Dispensing: {
        "date": _DATE,
        "drug_name": _TEXT,
        "yj_code": _YJ,
        "dose": _TEXT,
        "days": _DAYS,
        "pharmacy": _TEXT,
    },
    Medication: {
        "date": _DATE,
        "drug_name": _TEXT,
        "yj_code": _YJ,
        "dose": _TEXT,
        "days": _DAYS,
        "prescriber": _TEXT,
        "pharmacy": _optional(_TEXT),
    },
    Surgery: {"date": _DATE, "procedure": _TEXT, "facility": _TEXT},
    Treatment: {"date": _DATE, "description": _TEXT, "facility": _TEXT},
    Dialysis: {"date": _DATE, "kind": _choice(DialysisKind), "facility": _TEXT},
    Allergy: {"substance": _TEXT, "category": _choice(AllergyCategory), "reaction": _optional(_TEXT)},
    Contraindication: {"drug_name": _TEXT, "reason": _TEXT},
    AllergySection: {"allergies": _many(Allergy), "contraindications": _many(Contraindication)},
    Summary: {
        "as_of": _DATE,
        "patient": _record(Patient),
        "visits": _many(Visit),
        "dispensings": _many(Dispensing),
        "medications": _many(Medication),
        "surgeries": _many(Surgery),
        "treatments": _many(Treatment),
        "dialyses": _many(Dialysis),
        "last_checkup": _optional(_DATE),
        # None: the section is not available for this patient (not the same as "no allergies recorded").
        "allergies": _optional(_record(AllergySection)),
    },
}
_KEYS = {cls: frozenset(table) for cls, table in _FIELDS.items()}
for _cls, _table in _FIELDS.items():
    if tuple(_table) != tuple(f.name for f in fields(_cls)):
        raise TypeError(f"the field table of {_cls.__name__} does not match its dataclass")
