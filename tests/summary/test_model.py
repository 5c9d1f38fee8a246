"""The summary model: JSON round trips, strict reading, and agreement with the published schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.summary.model import (
    MAX_ITEMS,
    Allergy,
    AllergyCategory,
    AllergySection,
    Contraindication,
    Dialysis,
    DialysisKind,
    Dispensing,
    Medication,
    Patient,
    Sex,
    Summary,
    SummaryFormatError,
    Surgery,
    Treatment,
    Visit,
)
from mynabox_testkit import patients

TODAY = date(2026, 11, 25)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    lambda s: s.replace("\ufeff", " ").strip() != ""
)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
yj_codes = st.none() | st.from_regex(r"\A[0-9]{4}[0-9A-Z]{8}\Z")
days = st.integers(min_value=1, max_value=366)


def small(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, max_size=3).map(tuple)


summaries = st.builds(
    Summary,
    as_of=dates,
    patient=st.builds(
        Patient,
        name=texts,
        kana=texts,
        birth_date=dates,
        sex=st.sampled_from(Sex),
        insurer_number=st.from_regex(r"\A(?:[0-9]{6}|[0-9]{8})\Z"),
    ),
    visits=small(st.builds(Visit, date=dates, facility=texts, department=texts, inpatient=st.booleans())),
    dispensings=small(
        st.builds(
            Dispensing, date=dates, drug_name=texts, yj_code=yj_codes, dose=texts, days=days, pharmacy=texts
        )
    ),
    medications=small(
        st.builds(
            Medication,
            date=dates,
            drug_name=texts,
            yj_code=yj_codes,
            dose=texts,
            days=days,
            prescriber=texts,
            pharmacy=st.none() | texts,
        )
    ),
    surgeries=small(st.builds(Surgery, date=dates, procedure=texts, facility=texts)),
    treatments=small(st.builds(Treatment, date=dates, description=texts, facility=texts)),
    dialyses=small(st.builds(Dialysis, date=dates, kind=st.sampled_from(DialysisKind), facility=texts)),
    last_checkup=st.none() | dates,
    allergies=st.none()
    | st.builds(
        AllergySection,
        allergies=small(
            st.builds(
                Allergy,
                substance=texts,
                category=st.sampled_from(AllergyCategory),
                reaction=st.none() | texts,
            )
        ),
        contraindications=small(st.builds(Contraindication, drug_name=texts, reason=texts)),
    ),
)


@given(summary=summaries)
def test_round_trip_through_json_text(summary: Summary) -> None:
    text = json.dumps(summary.to_json(), ensure_ascii=False)
    assert Summary.from_json(json.loads(text)) == summary


@given(summary=summaries)
def test_output_conforms_to_the_published_schema(
    summary: Summary, schema_errors: Callable[[object], list[str]]
) -> None:
    assert schema_errors(summary.to_json()) == []


@pytest.mark.parametrize("p", [p for p in patients.PATIENTS if p.registered], ids=lambda p: p.key)
def test_synthetic_patients_round_trip_and_conform(
    p: patients.SyntheticPatient, schema_errors: Callable[[object], list[str]]
) -> None:
    summary = patients.summary_for(p, TODAY)
    assert summary is not None
    doc = summary.to_json()
    assert schema_errors(doc) == []
    assert Summary.from_json(doc) == summary


def test_allergy_section_absent_differs_from_empty() -> None:
    healthy = patients.summary_for(patients.patient("healthy"), TODAY)
    elderly = patients.summary_for(patients.patient("warfarin-elderly"), TODAY)
    assert healthy is not None and elderly is not None
    assert healthy.to_json()["allergies"] == {"allergies": [], "contraindications": []}
    assert elderly.to_json()["allergies"] is None
    assert Summary.from_json(elderly.to_json()).allergies is None


SECRET = "秘密の値XYZ"  # a value that must never show up in an error message


def _base() -> dict[str, Any]:
    summary = patients.summary_for(patients.patient("allergy"), TODAY)
    assert summary is not None
    return summary.to_json()


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[str | int, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


# (mutation, JSON path the error must name)
BAD_DOCUMENTS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing key", _delete(("patient", "kana")), "$.patient.kana"),
    ("extra key", _set(("patient", "my_number"), SECRET), "$.patient"),
    ("extra key not printable", _set(("patient", SECRET), 1), "$.patient"),
    ("name not a string", _set(("patient", "name"), 12), "$.patient.name"),
    ("empty name", _set(("patient", "name"), "  \u3000"), "$.patient.name"),
    ("control character", _set(("patient", "name"), SECRET + "\x1b[2J"), "$.patient.name"),
    ("lone surrogate", _set(("patient", "name"), SECRET + "\ud800"), "$.patient.name"),
    ("name too long", _set(("patient", "name"), SECRET * 20), "$.patient.name"),
    ("impossible date", _set(("patient", "birth_date"), "2023-02-29"), "$.patient.birth_date"),
    ("date with time", _set(("as_of",), "2026-11-25T10:00:00"), "$.as_of"),
    ("date with newline", _set(("as_of",), "2026-11-25\n"), "$.as_of"),
    ("sex out of code list", _set(("patient", "sex"), 3), "$.patient.sex"),
    ("sex as string", _set(("patient", "sex"), "1"), "$.patient.sex"),
    ("insurer with letters", _set(("patient", "insurer_number"), "0613ABCD"), "$.patient.insurer_number"),
    ("insurer with newline", _set(("patient", "insurer_number"), "061390\n"), "$.patient.insurer_number"),
    ("days as bool", _set(("medications", 0, "days"), True), "$.medications[0].days"),
    ("days zero", _set(("medications", 0, "days"), 0), "$.medications[0].days"),
    ("days float", _set(("medications", 0, "days"), 14.0), "$.medications[0].days"),
    ("yj lower case", _set(("medications", 0, "yj_code"), "4490023f1258"), "$.medications[0].yj_code"),
    ("yj short", _set(("medications", 0, "yj_code"), "4490023"), "$.medications[0].yj_code"),
    ("inpatient as int", _set(("visits", 0, "inpatient"), 0), "$.visits[0].inpatient"),
    (
        "unknown dialysis kind",
        _set(("dialyses",), [{"date": "2026-11-01", "kind": "x", "facility": "A"}]),
        "$.dialyses[0].kind",
    ),
    (
        "allergy category",
        _set(("allergies", "allergies", 1, "category"), "FOOD"),
        "$.allergies.allergies[1].category",
    ),
    ("list not array", _set(("surgeries",), {}), "$.surgeries"),
    (
        "too many items",
        _set(
            ("treatments",), [{"date": "2026-11-01", "description": "a", "facility": "b"}] * (MAX_ITEMS + 1)
        ),
        "$.treatments",
    ),
    ("wrong schema version", _set(("schema_version",), 2), "$.schema_version"),
    ("checkup not a date", _set(("last_checkup",), 20261101), "$.last_checkup"),
]


@pytest.mark.parametrize(
    ("mutate", "path"), [(m, p) for _, m, p in BAD_DOCUMENTS], ids=[n for n, _, _ in BAD_DOCUMENTS]
)
def test_bad_documents_are_rejected_naming_the_path_not_the_value(
    mutate: Callable[[dict[str, Any]], None], path: str, schema_errors: Callable[[object], list[str]]
) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    with pytest.raises(SummaryFormatError) as info:
        Summary.from_json(doc)
    assert info.value.path == path
    assert SECRET not in str(info.value)
    assert "伊藤" not in str(info.value)
    # The schema says the same thing the reader does.
    if "surrogate" not in str(info.value):  # not expressible in an ECMA-262 pattern, see the schema
        assert schema_errors(doc) != []


@pytest.mark.parametrize("doc", [None, [], "summary", 1, {"schema_version": 1}], ids=repr)
def test_non_documents_are_rejected(doc: object) -> None:
    with pytest.raises(SummaryFormatError):
        Summary.from_json(doc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)


@given(st.data())
def test_arbitrary_json_never_crashes_the_reader(data: st.DataObject) -> None:
    # Start from a valid document and replace one subtree by arbitrary JSON: deep enough to pass the
    # first checks, so the strict reader is exercised everywhere.
    doc = _base()
    keys = sorted(doc)
    key = data.draw(st.sampled_from(keys))
    doc[key] = data.draw(json_values)
    try:
        result = Summary.from_json(doc)
    except SummaryFormatError:
        return
    assert result.to_json() == doc
