"""The 救急用サマリー (emergency summary) as frozen values, and its JSON form.

The JSON form is the wire format of the summary API (docs/summary-api.openapi.yaml) and is published as
a JSON Schema (mynabox/data/summary.schema.json). `Summary.from_json` is strict: unknown keys, missing keys,
wrong types, bad dates or oversized lists raise `SummaryFormatError`, which names the JSON path and the
problem but never the offending value (it may be patient data).

Windows as the national service defines them: 受診歴 3 months, 電子処方箋 dispensing 45 days, 薬剤 3 months,
手術 5 years, 診療 3 months, 透析 3 months. The model carries whatever the service sent; the windows are
the service's business (and the synthetic patients', see mynabox.testing.patients).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import Enum, IntEnum
from typing import Any, TypeVar

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


@dataclass(frozen=True)
class Patient:
    name: str
    kana: str
    birth_date: date
    sex: Sex
    insurer_number: str


@dataclass(frozen=True)
class Visit:
    """受診歴: one visit to a facility (3 months)."""

    date: date
    facility: str
    department: str
    inpatient: bool


@dataclass(frozen=True)
class Dispensing:
    """電子処方箋: one dispensed item (45 days)."""

    date: date
    drug_name: str
    yj_code: str | None
    dose: str
    days: int
    pharmacy: str


@dataclass(frozen=True)
class Medication:
    """薬剤: one prescribed drug from the claims (3 months)."""

    date: date
    drug_name: str
    yj_code: str | None
    dose: str
    days: int
    prescriber: str
    pharmacy: str | None


@dataclass(frozen=True)
class Surgery:
    """手術: one operation (5 years)."""

    date: date
    procedure: str
    facility: str


@dataclass(frozen=True)
class Treatment:
    """診療: one procedure or examination (3 months)."""

    date: date
    description: str
    facility: str


@dataclass(frozen=True)
class Dialysis:
    """透析: one session (3 months)."""

    date: date
    kind: DialysisKind
    facility: str


@dataclass(frozen=True)
class Allergy:
    substance: str
    category: AllergyCategory
    reaction: str | None


@dataclass(frozen=True)
class Contraindication:
    drug_name: str
    reason: str


@dataclass(frozen=True)
class AllergySection:
    """From the 電子カルテ情報共有サービス. Empty tuples mean "none recorded"."""

    allergies: tuple[Allergy, ...]
    contraindications: tuple[Contraindication, ...]


@dataclass(frozen=True)
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
        return {
            "schema_version": SCHEMA_VERSION,
            "as_of": self.as_of.isoformat(),
            "patient": {
                "name": self.patient.name,
                "kana": self.patient.kana,
                "birth_date": self.patient.birth_date.isoformat(),
                "sex": int(self.patient.sex),
                "insurer_number": self.patient.insurer_number,
            },
            "visits": [
                {
                    "date": v.date.isoformat(),
                    "facility": v.facility,
                    "department": v.department,
                    "inpatient": v.inpatient,
                }
                for v in self.visits
            ],
            "dispensings": [
                {
                    "date": d.date.isoformat(),
                    "drug_name": d.drug_name,
                    "yj_code": d.yj_code,
                    "dose": d.dose,
                    "days": d.days,
                    "pharmacy": d.pharmacy,
                }
                for d in self.dispensings
            ],
            "medications": [
                {
                    "date": m.date.isoformat(),
                    "drug_name": m.drug_name,
                    "yj_code": m.yj_code,
                    "dose": m.dose,
                    "days": m.days,
                    "prescriber": m.prescriber,
                    "pharmacy": m.pharmacy,
                }
                for m in self.medications
            ],
            "surgeries": [
                {"date": s.date.isoformat(), "procedure": s.procedure, "facility": s.facility}
                for s in self.surgeries
            ],
            "treatments": [
                {"date": t.date.isoformat(), "description": t.description, "facility": t.facility}
                for t in self.treatments
            ],
            "dialyses": [
                {"date": d.date.isoformat(), "kind": d.kind.value, "facility": d.facility}
                for d in self.dialyses
            ],
            "last_checkup": None if self.last_checkup is None else self.last_checkup.isoformat(),
            "allergies": None if self.allergies is None else _allergies_to_json(self.allergies),
        }

    @classmethod
    def from_json(cls, doc: object) -> Summary:
        return _summary_from_json(doc)


def _allergies_to_json(section: AllergySection) -> dict[str, Any]:
    return {
        "allergies": [
            {"substance": a.substance, "category": a.category.value, "reaction": a.reaction}
            for a in section.allergies
        ],
        "contraindications": [
            {"drug_name": c.drug_name, "reason": c.reason} for c in section.contraindications
        ],
    }


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


def _opt_text(value: object, path: str) -> str | None:
    return None if value is None else _text(value, path)


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


def _opt_date(value: object, path: str) -> date | None:
    return None if value is None else _date(value, path)


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


_PATIENT_KEYS = frozenset({"name", "kana", "birth_date", "sex", "insurer_number"})


def _patient(value: object, path: str) -> Patient:
    d = _obj(value, path, _PATIENT_KEYS)
    return Patient(
        name=_text(d["name"], f"{path}.name", 100),
        kana=_text(d["kana"], f"{path}.kana", 100),
        birth_date=_date(d["birth_date"], f"{path}.birth_date"),
        sex=_enum(d["sex"], f"{path}.sex", Sex),
        insurer_number=_pattern(d["insurer_number"], f"{path}.insurer_number", INSURER_RE, "6 or 8 digits"),
    )


def _visit(value: object, path: str) -> Visit:
    d = _obj(value, path, frozenset({"date", "facility", "department", "inpatient"}))
    return Visit(
        date=_date(d["date"], f"{path}.date"),
        facility=_text(d["facility"], f"{path}.facility"),
        department=_text(d["department"], f"{path}.department"),
        inpatient=_bool(d["inpatient"], f"{path}.inpatient"),
    )


def _dispensing(value: object, path: str) -> Dispensing:
    d = _obj(value, path, frozenset({"date", "drug_name", "yj_code", "dose", "days", "pharmacy"}))
    return Dispensing(
        date=_date(d["date"], f"{path}.date"),
        drug_name=_text(d["drug_name"], f"{path}.drug_name"),
        yj_code=_yj(d["yj_code"], f"{path}.yj_code"),
        dose=_text(d["dose"], f"{path}.dose"),
        days=_int(d["days"], f"{path}.days", 1, 366),
        pharmacy=_text(d["pharmacy"], f"{path}.pharmacy"),
    )


def _medication(value: object, path: str) -> Medication:
    keys = frozenset({"date", "drug_name", "yj_code", "dose", "days", "prescriber", "pharmacy"})
    d = _obj(value, path, keys)
    return Medication(
        date=_date(d["date"], f"{path}.date"),
        drug_name=_text(d["drug_name"], f"{path}.drug_name"),
        yj_code=_yj(d["yj_code"], f"{path}.yj_code"),
        dose=_text(d["dose"], f"{path}.dose"),
        days=_int(d["days"], f"{path}.days", 1, 366),
        prescriber=_text(d["prescriber"], f"{path}.prescriber"),
        pharmacy=_opt_text(d["pharmacy"], f"{path}.pharmacy"),
    )


def _surgery(value: object, path: str) -> Surgery:
    d = _obj(value, path, frozenset({"date", "procedure", "facility"}))
    return Surgery(
        date=_date(d["date"], f"{path}.date"),
        procedure=_text(d["procedure"], f"{path}.procedure"),
        facility=_text(d["facility"], f"{path}.facility"),
    )


def _treatment(value: object, path: str) -> Treatment:
    d = _obj(value, path, frozenset({"date", "description", "facility"}))
    return Treatment(
        date=_date(d["date"], f"{path}.date"),
        description=_text(d["description"], f"{path}.description"),
        facility=_text(d["facility"], f"{path}.facility"),
    )


def _dialysis(value: object, path: str) -> Dialysis:
    d = _obj(value, path, frozenset({"date", "kind", "facility"}))
    return Dialysis(
        date=_date(d["date"], f"{path}.date"),
        kind=_enum(d["kind"], f"{path}.kind", DialysisKind),
        facility=_text(d["facility"], f"{path}.facility"),
    )


def _allergy(value: object, path: str) -> Allergy:
    d = _obj(value, path, frozenset({"substance", "category", "reaction"}))
    return Allergy(
        substance=_text(d["substance"], f"{path}.substance"),
        category=_enum(d["category"], f"{path}.category", AllergyCategory),
        reaction=_opt_text(d["reaction"], f"{path}.reaction"),
    )


def _contraindication(value: object, path: str) -> Contraindication:
    d = _obj(value, path, frozenset({"drug_name", "reason"}))
    return Contraindication(
        drug_name=_text(d["drug_name"], f"{path}.drug_name"),
        reason=_text(d["reason"], f"{path}.reason"),
    )


def _allergy_section(value: object, path: str) -> AllergySection | None:
    if value is None:
        return None
    d = _obj(value, path, frozenset({"allergies", "contraindications"}))
    return AllergySection(
        allergies=_list(d["allergies"], f"{path}.allergies", _allergy),
        contraindications=_list(d["contraindications"], f"{path}.contraindications", _contraindication),
    )


_SUMMARY_KEYS = frozenset(
    {
        "schema_version",
        "as_of",
        "patient",
        "visits",
        "dispensings",
        "medications",
        "surgeries",
        "treatments",
        "dialyses",
        "last_checkup",
        "allergies",
    }
)


def _summary_from_json(doc: object) -> Summary:
    d = _obj(doc, "$", _SUMMARY_KEYS)
    _int(d["schema_version"], "$.schema_version", SCHEMA_VERSION, SCHEMA_VERSION)
    return Summary(
        as_of=_date(d["as_of"], "$.as_of"),
        patient=_patient(d["patient"], "$.patient"),
        visits=_list(d["visits"], "$.visits", _visit),
        dispensings=_list(d["dispensings"], "$.dispensings", _dispensing),
        medications=_list(d["medications"], "$.medications", _medication),
        surgeries=_list(d["surgeries"], "$.surgeries", _surgery),
        treatments=_list(d["treatments"], "$.treatments", _treatment),
        dialyses=_list(d["dialyses"], "$.dialyses", _dialysis),
        last_checkup=_opt_date(d["last_checkup"], "$.last_checkup"),
        allergies=_allergy_section(d["allergies"], "$.allergies"),
    )
