"""Critical flags derived from a summary, each with the evidence behind it.

The drug classes come from data (mynabox/data/drug_classes.json, sources recorded there), so a pharmacist
can review and extend the table without touching code. The order of `FlagCode` is the order in which the
OLED shows the flags: bleeding risk first (it changes what the crew does at the scene: haemostasis, head
injury triage), then hypoglycaemia risk, dialysis (shunt arm, hospital choice), allergy, past surgery.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from datetime import date
from enum import Enum
from functools import cache
from importlib import resources

from mynabox.record import record
from mynabox.summary.model import AllergyCategory, DialysisKind, Summary

SURGERY_YEARS = 5


class FlagCode(Enum):
    """Declaration order is display priority."""

    ANTICOAGULANT = "anticoagulant"
    ANTIPLATELET = "antiplatelet"
    INSULIN = "insulin"
    HYPOGLYCAEMIC = "hypoglycaemic"
    DIALYSIS = "dialysis"
    ALLERGY = "allergy"
    SURGERY = "surgery"


_PRIORITY = {code: i for i, code in enumerate(FlagCode)}
DRUG_FLAGS = (FlagCode.ANTICOAGULANT, FlagCode.ANTIPLATELET, FlagCode.INSULIN, FlagCode.HYPOGLYCAEMIC)
_LABELS = {FlagCode.DIALYSIS: "透析", FlagCode.ALLERGY: "アレルギー", FlagCode.SURGERY: "手術歴"}
_DIALYSIS_JA = {DialysisKind.HEMODIALYSIS: "血液透析", DialysisKind.PERITONEAL: "腹膜透析"}
_CATEGORY_JA = {AllergyCategory.DRUG: "薬剤", AllergyCategory.FOOD: "食物", AllergyCategory.OTHER: "その他"}


@record
class DrugItem:
    """A drug that raised a drug flag: named once, from its latest record (medications or dispensings)."""

    section: str  # "medications" (claims) or "dispensings" (電子処方箋)
    drug_name: str
    yj_code: str | None
    date: date

    def text(self) -> str:
        return f"{self.drug_name} ({self.date.isoformat()})"

    def to_json(self) -> dict[str, object]:
        return {
            "section": self.section,
            "drug_name": self.drug_name,
            "yj_code": self.yj_code,
            "date": self.date.isoformat(),
        }


@record
class DialysisItem:
    """Dialysis sessions of one kind at one facility."""

    kind: DialysisKind
    facility: str
    last_date: date
    sessions: int

    def text(self) -> str:
        last = self.last_date.isoformat()
        return f"{_DIALYSIS_JA[self.kind]} {self.facility} (最終 {last}, {self.sessions}回)"

    def to_json(self) -> dict[str, object]:
        return {
            "section": "dialyses",
            "kind": self.kind.value,
            "facility": self.facility,
            "last_date": self.last_date.isoformat(),
            "sessions": self.sessions,
        }


@record
class AllergyItem:
    substance: str
    category: AllergyCategory
    reaction: str | None

    def text(self) -> str:
        reaction = "" if self.reaction is None else ": " + self.reaction
        return f"{self.substance} ({_CATEGORY_JA[self.category]}{reaction})"

    def to_json(self) -> dict[str, object]:
        return {
            "section": "allergies",
            "substance": self.substance,
            "category": self.category.value,
            "reaction": self.reaction,
        }


@record
class SurgeryItem:
    procedure: str
    facility: str
    date: date

    def text(self) -> str:
        return f"{self.procedure} {self.facility} ({self.date.isoformat()})"

    def to_json(self) -> dict[str, object]:
        return {
            "section": "surgeries",
            "procedure": self.procedure,
            "facility": self.facility,
            "date": self.date.isoformat(),
        }


FlagItem = DrugItem | DialysisItem | AllergyItem | SurgeryItem


@record
class Flag:
    code: FlagCode
    label: str  # short Japanese for the OLED
    evidence: tuple[str, ...]  # what raised it, most recent first (the items' text)
    items: tuple[FlagItem, ...] = ()  # the same, as records: what the summary message carries

    @classmethod
    def of(cls, code: FlagCode, label: str, items: tuple[FlagItem, ...]) -> Flag:
        """One derivation: the OLED's evidence is the text of the items the message carries."""
        return cls(code, label, tuple(i.text() for i in items), items)

    def to_json(self) -> dict[str, object]:
        return {"code": self.code.value, "label": self.label, "items": [i.to_json() for i in self.items]}


def flags_json(flags: Iterable[Flag]) -> list[dict[str, object]]:
    """The ``flags`` of a summary message: exactly the flags the OLED showed, in its order, with items."""
    return [f.to_json() for f in flags]


def flags_from_json(doc: object) -> tuple[Flag, ...]:
    """The receiving side's copy of what the box showed, from a message's ``flags`` (``ValueError`` if it
    is not the shape ``flags_json`` writes: check the body first)."""
    if not isinstance(doc, list):
        raise ValueError("flags must be a list")
    out = []
    for flag in doc:
        try:
            code, label = FlagCode(flag["code"]), str(flag["label"])
            items = tuple(_item_from_json(item) for item in flag["items"])
        except (KeyError, TypeError) as err:
            raise ValueError("malformed flag") from err
        out.append(Flag.of(code, label, items))
    return tuple(out)


def _item_from_json(item: dict[str, object]) -> FlagItem:
    section = item["section"]
    if section in ("medications", "dispensings"):
        yj = item["yj_code"]
        return DrugItem(
            str(section), str(item["drug_name"]), None if yj is None else str(yj), _day(item["date"])
        )
    if section == "dialyses":
        return DialysisItem(
            DialysisKind(item["kind"]),
            str(item["facility"]),
            _day(item["last_date"]),
            int(str(item["sessions"])),
        )
    if section == "allergies":
        reaction = item["reaction"]
        return AllergyItem(
            str(item["substance"]),
            AllergyCategory(item["category"]),
            None if reaction is None else str(reaction),
        )
    if section == "surgeries":
        return SurgeryItem(str(item["procedure"]), str(item["facility"]), _day(item["date"]))
    raise ValueError("unknown flag item section")


def _day(value: object) -> date:
    return date.fromisoformat(str(value))


class DrugTableError(ValueError):
    """The drug classification table is malformed."""


# Invisible or layout-only characters: a name with one of them inside must still match (a U+200B inside
# ワルファリン hid the anticoagulant flag). Categories Cf (format: ZWSP, soft hyphen, word joiner, BOM, bidi
# controls), Cc, Cs, Cn, Co and every separator (Z*), plus the default-ignorable code points Unicode files
# under other categories (combining grapheme joiner, Hangul fillers, Khmer inherent vowels, variation
# selectors).
_DROP_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Cn", "Co", "Zs", "Zl", "Zp"})
_DROP_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)
# Long-vowel look-alikes typed for ー (hyphens, dashes, minus signs; NFKC already folds half-width ｰ).
_DASHES = dict.fromkeys(map(ord, "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d"), "ー")
# Hiragana ぁ..ゖ, ゝ, ゞ to katakana: the same name typed in the other syllabary.
_HIRAGANA = {c: c + 0x60 for c in (*range(0x3041, 0x3097), 0x309D, 0x309E)}


def _visible(text: str) -> str:
    return "".join(
        ch
        for ch in text
        if unicodedata.category(ch) not in _DROP_CATEGORIES
        and not any(lo <= ord(ch) <= hi for lo, hi in _DROP_RANGES)
    )


def normalise_name(name: str) -> str:
    """The form names are matched in: full- and half-width forms, either syllabary, stray spaces and
    invisible characters all fold to one spelling (NFKC, invisibles dropped, hiragana to katakana, dashes to
    ー, case folded). Invisibles go before NFKC so a split カ + U+3099 still composes, and again after it
    because NFKC makes spaces of some characters (U+3000, U+309B)."""
    folded = _visible(unicodedata.normalize("NFKC", _visible(name)))
    return unicodedata.normalize("NFC", folded).translate(_HIRAGANA).translate(_DASHES).casefold()


@record
class DrugClass:
    code: FlagCode
    label: str
    yj_prefixes: tuple[str, ...]
    names: tuple[str, ...]
    exclude_yj_prefixes: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()

    def matches(self, drug_name: str, yj_code: str | None) -> bool:
        name = normalise_name(drug_name)
        if any(x in name for x in self.exclude_names):
            return False
        if yj_code is not None and yj_code.startswith(self.exclude_yj_prefixes):
            return False
        if yj_code is not None and yj_code.startswith(self.yj_prefixes):
            return True
        return any(n in name for n in self.names)


def _strings(entry: dict[str, object], key: str, where: str, *, digits: bool = False) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DrugTableError(f"{where}.{key}: expected a list of non-empty strings")
    if digits and not all(v.isdigit() and len(v) <= 7 for v in value):
        raise DrugTableError(f"{where}.{key}: YJ prefixes are 1-7 digits")
    return tuple(v if digits else normalise_name(v) for v in value)


def parse_drug_classes(text: str) -> tuple[DrugClass, ...]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DrugTableError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("classes"), list):
        raise DrugTableError("expected an object with version 1 and a classes list")
    known = {"code", "label", "yj_prefixes", "names", "exclude_yj_prefixes", "exclude_names", "note"}
    out: list[DrugClass] = []
    for i, entry in enumerate(doc["classes"]):
        where = f"classes[{i}]"
        if not isinstance(entry, dict) or set(entry) - known:
            raise DrugTableError(f"{where}: expected an object with keys {sorted(known)}")
        try:
            code = FlagCode(entry.get("code"))
        except ValueError:
            raise DrugTableError(f"{where}.code: unknown flag code") from None
        if code not in DRUG_FLAGS:
            raise DrugTableError(f"{where}.code: not a drug flag")
        label = entry.get("label")
        if not isinstance(label, str) or not label:
            raise DrugTableError(f"{where}.label: expected a non-empty string")
        out.append(
            DrugClass(
                code=code,
                label=label,
                yj_prefixes=_strings(entry, "yj_prefixes", where, digits=True),
                names=_strings(entry, "names", where),
                exclude_yj_prefixes=_strings(entry, "exclude_yj_prefixes", where, digits=True),
                exclude_names=_strings(entry, "exclude_names", where),
            )
        )
    if sorted(c.code.value for c in out) != sorted(c.value for c in DRUG_FLAGS):
        raise DrugTableError("expected exactly one class per drug flag")
    return tuple(out)


@cache
def drug_classes() -> tuple[DrugClass, ...]:
    """The packaged table, read once."""
    text = resources.files("mynabox").joinpath("data", "drug_classes.json").read_text(encoding="utf-8")
    return parse_drug_classes(text)


def classify(
    drug_name: str, yj_code: str | None, classes: Iterable[DrugClass] | None = None
) -> frozenset[FlagCode]:
    table = drug_classes() if classes is None else classes
    return frozenset(c.code for c in table if c.matches(drug_name, yj_code))


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _drug_flags(summary: Summary, classes: tuple[DrugClass, ...]) -> list[Flag]:
    # Medications (claims, 3 months) and dispensings (電子処方箋, 45 days) overlap; evidence names each drug
    # once, with its latest date (and that record's YJ code).
    records = [("medications", m.date, m.drug_name, m.yj_code) for m in summary.medications]
    records += [("dispensings", d.date, d.drug_name, d.yj_code) for d in summary.dispensings]
    flags = []
    for cls in classes:
        latest: dict[str, DrugItem] = {}
        for section, day, name, yj in records:
            if cls.matches(name, yj) and (name not in latest or latest[name].date < day):
                latest[name] = DrugItem(section, name, yj, day)
        if latest:
            ordered = sorted(latest.values(), key=lambda i: (-i.date.toordinal(), i.drug_name))
            flags.append(Flag.of(cls.code, cls.label, tuple(ordered)))
    return flags


def _dialysis_flag(summary: Summary) -> Flag | None:
    groups: dict[tuple[DialysisKind, str], list[date]] = {}
    for d in summary.dialyses:
        groups.setdefault((d.kind, d.facility), []).append(d.date)
    if not groups:
        return None
    ordered = sorted(groups.items(), key=lambda kv: -max(kv[1]).toordinal())
    items = tuple(DialysisItem(kind, facility, max(days), len(days)) for (kind, facility), days in ordered)
    return Flag.of(FlagCode.DIALYSIS, _LABELS[FlagCode.DIALYSIS], items)


def _allergy_flag(summary: Summary) -> Flag | None:
    # Contraindications stay in the summary for the receiving side; the flag is for allergies.
    if summary.allergies is None or not summary.allergies.allergies:
        return None
    items = tuple(AllergyItem(a.substance, a.category, a.reaction) for a in summary.allergies.allergies)
    return Flag.of(FlagCode.ALLERGY, _LABELS[FlagCode.ALLERGY], items)


def _surgery_flag(summary: Summary, today: date) -> Flag | None:
    cutoff = _years_before(today, SURGERY_YEARS)
    recent = sorted((s for s in summary.surgeries if s.date >= cutoff), key=lambda s: -s.date.toordinal())
    if not recent:
        return None
    items = tuple(SurgeryItem(s.procedure, s.facility, s.date) for s in recent)
    return Flag.of(FlagCode.SURGERY, _LABELS[FlagCode.SURGERY], items)


def derive_flags(
    summary: Summary, *, today: date, classes: tuple[DrugClass, ...] | None = None
) -> tuple[Flag, ...]:
    """Flags in display priority order; `today` bounds the 5-year surgery window."""
    flags = _drug_flags(summary, drug_classes() if classes is None else classes)
    for flag in (_dialysis_flag(summary), _allergy_flag(summary), _surgery_flag(summary, today)):
        if flag is not None:
            flags.append(flag)
    return tuple(sorted(flags, key=lambda f: _PRIORITY[f.code]))
