"""The FHIR export of every synthetic patient's summary message validates with a FHIR model library
(fhir.resources; its R4B models: the package ships no 4.0.1 ones, and these resources did not change from R4
to R4B), every reference resolves inside the Bundle, drugs keep their YJ codes, and the flags the box showed
are Flag resources pointing at the records that raised them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from gateway.conftest import seal_and_open  # tests/ is on sys.path
from gateway.receiving import NOW
from mynabox.gateway.fhir import FLAG_DETAIL, JP, YJ_SYSTEM, FhirExportError, export
from mynabox.gateway.sink import write_fhir
from mynabox.payload.envelope import Kind
from mynabox_testkit.messages import patient_body
from mynabox_testkit.patients import PATIENTS, patient, summary_for

SUMMARY_PATIENTS = [p.key for p in PATIENTS if p.registered]


def _export(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    kind, body, _ = patient_body(patient(key), NOW)
    assert kind is Kind.SUMMARY
    opened = seal_and_open(kind, body)
    doc = export(opened)
    assert export(opened) == doc  # the same message, the same Bundle
    return doc, body


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        out = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return out + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("key", SUMMARY_PATIENTS)
def test_every_patient_exports_a_valid_bundle(key: str) -> None:
    doc, body = _export(key)
    Bundle.model_validate(doc)  # raises on any structural error
    urls = {e["fullUrl"] for e in doc["entry"]}
    assert len(urls) == len(doc["entry"])
    assert set(_refs(doc)) <= urls  # every reference resolves inside the Bundle
    json.dumps(doc)
    resources = [e["resource"] for e in doc["entry"]]
    summary = summary_for(patient(key), NOW.date())
    assert summary is not None
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    assert len(by_type.get("MedicationStatement", [])) == len(summary.medications)
    assert len(by_type.get("MedicationDispense", [])) == len(summary.dispensings)
    assert len(by_type.get("Flag", [])) == len(body["flags"])
    (person,) = by_type["Patient"]
    assert person["meta"]["profile"] == [JP + "JP_Patient"]
    assert [n["text"] for n in person["name"]] == [summary.patient.name, summary.patient.kana]
    assert person["birthDate"] == summary.patient.birth_date.isoformat()
    for m, r in zip(summary.medications, by_type.get("MedicationStatement", []), strict=True):
        codings = r["medicationCodeableConcept"].get("coding", [])
        assert codings == (
            [{"system": YJ_SYSTEM, "code": m.yj_code, "display": m.drug_name}] if m.yj_code else []
        )


@pytest.mark.parametrize(
    "key", ["warfarin-elderly", "dialysis", "allergy", "insulin-diabetic", "recent-surgery"]
)
def test_each_flag_points_at_the_records_that_raised_it(key: str) -> None:
    doc, body = _export(key)
    resources = {e["fullUrl"]: e["resource"] for e in doc["entry"]}
    flags = [r for r in resources.values() if r["resourceType"] == "Flag"]
    assert [f["code"]["coding"][0]["code"] for f in flags] == [f["code"] for f in body["flags"]]
    for resource, flag in zip(flags, body["flags"], strict=True):
        details = [
            x["valueReference"]["reference"] for x in resource.get("extension", []) if x["url"] == FLAG_DETAIL
        ]
        assert len(details) == len(flag["items"]), flag["code"]
        for url, item in zip(details, flag["items"], strict=True):
            target = resources[url]
            if "drug_name" in item:
                assert target["medicationCodeableConcept"]["text"] == item["drug_name"]
                if item["yj_code"]:
                    assert target["medicationCodeableConcept"]["coding"][0]["code"] == item["yj_code"]
            elif "procedure" in item:
                assert target["resourceType"] == "Procedure" and target["code"]["text"] == item["procedure"]
            elif "substance" in item:
                assert target["resourceType"] == "AllergyIntolerance"
            else:
                assert target["resourceType"] == "Condition"


def test_a_card_record_has_no_export() -> None:
    kind, body, _ = patient_body(patient("not-registered"), NOW)
    with pytest.raises(FhirExportError):
        export(seal_and_open(kind, body))


def test_the_validator_has_teeth() -> None:
    """The model library refuses what FHIR refuses (so a passing export means something)."""
    doc, _ = _export("warfarin-elderly")
    statement = next(
        e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "MedicationStatement"
    )
    del statement["status"]  # 1..1 in R4
    with pytest.raises(ValueError, match="status"):
        Bundle.model_validate(doc)
    statement["status"] = "taken"  # not in the value set: the library does not check codes (below does)
    Bundle.model_validate(doc)


# Required bindings of R4 (the model library checks structure and types, not codes).
REQUIRED_CODES: dict[tuple[str, str], set[str]] = {
    ("MedicationStatement", "status"): {
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    },
    ("MedicationDispense", "status"): {
        "preparation",
        "in-progress",
        "cancelled",
        "on-hold",
        "completed",
        "entered-in-error",
        "stopped",
        "declined",
        "unknown",
    },
    ("Encounter", "status"): {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    ("Procedure", "status"): {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    },
    ("Observation", "status"): {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    ("Flag", "status"): {"active", "inactive", "entered-in-error"},
    ("Coverage", "status"): {"active", "cancelled", "draft", "entered-in-error"},
    ("AllergyIntolerance", "type"): {"allergy", "intolerance"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
}


@pytest.mark.parametrize("key", SUMMARY_PATIENTS)
def test_required_codes_are_in_their_value_sets(key: str) -> None:
    doc, _ = _export(key)
    assert doc["type"] in {
        "document",
        "message",
        "transaction",
        "batch",
        "collection",
        "searchset",
        "history",
    }
    for entry in doc["entry"]:
        resource = entry["resource"]
        for (kind, element), codes in REQUIRED_CODES.items():
            if resource["resourceType"] == kind and element in resource:
                assert resource[element] in codes, (kind, element)
        if resource["resourceType"] == "AllergyIntolerance":
            assert set(resource.get("category", [])) <= {"food", "medication", "environment", "biologic"}


def test_the_file_export(tmp_path: Path) -> None:
    kind, body, _ = patient_body(patient("dialysis"), NOW)
    opened = seal_and_open(kind, body)
    path = write_fhir(tmp_path, opened)
    assert path == tmp_path / opened.device_id / f"{opened.message_id}.fhir.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    Bundle.model_validate_json(path.read_bytes())
    kind, body, _ = patient_body(patient("not-registered"), NOW)
    assert write_fhir(tmp_path, seal_and_open(kind, body)) is None
