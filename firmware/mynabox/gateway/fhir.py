"""An opened summary message as an HL7 FHIR R4 Bundle for the hospital's systems (JP Core where it has a
profile). The mapping table is in docs/gateway.md (FHIR export).

Pure: a dict in, a dict out (JSON), no FHIR library at run time (the tests validate the output with
``fhir.resources``). Every resource gets a ``urn:uuid`` derived from the message id, so the same message
always exports the same Bundle. Drug names keep their YJ codes as codings; the flags the box showed are
``Flag`` resources whose ``flag-detail`` extensions point at the records that raised them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from mynabox.payload.seal import Opened
from mynabox.summary.model import AllergyCategory, Sex, Summary

JP = "http://jpfhir.jp/fhir/core/StructureDefinition/"
YJ_SYSTEM = "urn:oid:1.2.392.100495.20.1.73"  # YJ code (個別医薬品コード), as JP Core names it
INSURER_SYSTEM = "urn:oid:1.2.392.100495.20.3.61"  # 保険者番号
FLAG_SYSTEM = "urn:mynabox:flag"  # the box's flag codes (docs/gateway.md, Flags)
CARD_HASH_SYSTEM = "urn:mynabox:card-hash"  # read.card_hash: keyed, links the audit record
MESSAGE_SYSTEM = "urn:mynabox:message"  # the message's jti
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
_GENDER = {Sex.MALE: "male", Sex.FEMALE: "female", Sex.UNKNOWN: "unknown"}
_ALLERGY_CATEGORY = {AllergyCategory.DRUG: "medication", AllergyCategory.FOOD: "food"}  # other: none
_DIALYSIS_JA = {"hemodialysis": "血液透析", "peritoneal": "腹膜透析"}


class FhirExportError(ValueError):
    """The message is not a summary that can be exported (a card record, an audit, a malformed body)."""


def _ref(url: str) -> dict[str, str]:
    return {"reference": url}


def _drug(name: str, yj: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": name}
    if yj is not None:
        concept["coding"] = [{"system": YJ_SYSTEM, "code": yj, "display": name}]
    return concept


class _Bundle:
    def __init__(self, message_id: str) -> None:
        self._ns = uuid.UUID(message_id)
        self.entries: list[dict[str, Any]] = []
        self.by_key: dict[tuple[str, ...], str] = {}

    def add(self, resource: dict[str, Any], *key: str) -> str:
        url = f"urn:uuid:{uuid.uuid5(self._ns, '/'.join((resource['resourceType'], *key)))}"
        self.entries.append({"fullUrl": url, "resource": resource})
        self.by_key.setdefault((resource["resourceType"], *key), url)
        return url


def export(opened: Opened) -> dict[str, Any]:
    """The Bundle (type ``collection``) of one opened summary message, as JSON."""
    body = opened.body
    doc = body.get("summary")
    if opened.kind.value != "summary" or not isinstance(doc, dict):
        raise FhirExportError("only summary messages have a FHIR export")
    summary = Summary.from_json(doc)  # SummaryFormatError is a ValueError too
    read = body.get("read")
    flags = body.get("flags")
    card_hash = read.get("card_hash") if isinstance(read, Mapping) else None
    bundle = _Bundle(opened.message_id)
    patient = bundle.add(_patient(summary, card_hash), "patient")
    subject = _ref(patient)
    p = summary.patient
    bundle.add(
        {
            "resourceType": "Coverage",
            "meta": {"profile": [JP + "JP_Coverage"]},
            "status": "active",
            "beneficiary": subject,
            "payor": [{"identifier": {"system": INSURER_SYSTEM, "value": p.insurer_number}}],
        },
        "coverage",
    )
    for i, m in enumerate(summary.medications):
        end = m.date + timedelta(days=m.days)
        resource = {
            "resourceType": "MedicationStatement",
            "meta": {"profile": [JP + "JP_MedicationStatement"]},
            "status": "active" if end > summary.as_of else "completed",
            "category": {"text": "薬剤（レセプト）"},
            "medicationCodeableConcept": _drug(m.drug_name, m.yj_code),
            "subject": subject,
            "effectivePeriod": {"start": m.date.isoformat(), "end": end.isoformat()},
            "dateAsserted": summary.as_of.isoformat(),
            "informationSource": {"display": m.prescriber},
            "dosage": [{"text": f"{m.dose} {m.days}日分"}],
        }
        bundle.add(resource, "medications", str(i))
        bundle.by_key.setdefault(
            ("medications", m.drug_name, m.date.isoformat()), bundle.entries[-1]["fullUrl"]
        )
    for i, d in enumerate(summary.dispensings):
        resource = {
            "resourceType": "MedicationDispense",
            "meta": {"profile": [JP + "JP_MedicationDispense"]},
            "status": "completed",
            "medicationCodeableConcept": _drug(d.drug_name, d.yj_code),
            "subject": subject,
            "performer": [{"actor": {"display": d.pharmacy}}],
            "daysSupply": {"value": d.days, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"},
            "whenHandedOver": d.date.isoformat(),
            "dosageInstruction": [{"text": d.dose}],
        }
        bundle.add(resource, "dispensings", str(i))
        bundle.by_key.setdefault(
            ("dispensings", d.drug_name, d.date.isoformat()), bundle.entries[-1]["fullUrl"]
        )
    for i, v in enumerate(summary.visits):
        bundle.add(
            {
                "resourceType": "Encounter",
                "meta": {"profile": [JP + "JP_Encounter"]},
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP" if v.inpatient else "AMB",
                },
                "serviceType": {"text": v.department},
                "subject": subject,
                "period": {"start": v.date.isoformat()},
                "serviceProvider": {"display": v.facility},
            },
            "visits",
            str(i),
        )
    for i, s in enumerate(summary.surgeries):
        url = bundle.add(_procedure(subject, "手術", s.procedure, s.date, s.facility), "surgeries", str(i))
        bundle.by_key.setdefault(("surgeries", s.procedure, s.date.isoformat()), url)
    for i, t in enumerate(summary.treatments):
        bundle.add(_procedure(subject, "診療", t.description, t.date, t.facility), "treatments", str(i))
    dialysis_groups: dict[tuple[str, str], list[date]] = {}
    for session in summary.dialyses:
        dialysis_groups.setdefault((session.kind.value, session.facility), []).append(session.date)
    for (kind, facility), days in dialysis_groups.items():
        url = bundle.add(
            {
                "resourceType": "Condition",
                "meta": {"profile": [JP + "JP_Condition"]},
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                "code": "problem-list-item",
                            }
                        ]
                    }
                ],
                "code": {"text": f"{_DIALYSIS_JA[kind]}（維持透析）"},
                "subject": subject,
                "recordedDate": max(days).isoformat(),
                "note": [{"text": f"{facility}: 直近3か月 {len(days)}回, 最終 {max(days).isoformat()}"}],
            },
            "dialyses",
            kind,
            facility,
        )
        bundle.by_key[("dialyses", kind, facility)] = url
    if summary.last_checkup is not None:
        bundle.add(
            {
                "resourceType": "Observation",
                "meta": {"profile": [JP + "JP_Observation_Common"]},
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "exam",
                            }
                        ]
                    }
                ],
                "code": {"text": "特定健診（最終受診日）"},
                "subject": subject,
                "effectiveDateTime": summary.last_checkup.isoformat(),
            },
            "checkup",
        )
    if summary.allergies is not None:
        for i, a in enumerate(summary.allergies.allergies):
            allergy: dict[str, Any] = {
                "resourceType": "AllergyIntolerance",
                "meta": {"profile": [JP + "JP_AllergyIntolerance"]},
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                            "code": "active",
                        }
                    ]
                },
                "type": "allergy",
                "code": {"text": a.substance},
                "patient": subject,
            }
            if a.category in _ALLERGY_CATEGORY:
                allergy["category"] = [_ALLERGY_CATEGORY[a.category]]
            if a.reaction is not None:
                allergy["reaction"] = [{"manifestation": [{"text": a.reaction}]}]
            url = bundle.add(allergy, "allergies", str(i))
            bundle.by_key.setdefault(("allergies", a.substance), url)
        for i, c in enumerate(summary.allergies.contraindications):
            bundle.add(
                {
                    "resourceType": "AllergyIntolerance",
                    "meta": {"profile": [JP + "JP_AllergyIntolerance"]},
                    "type": "intolerance",
                    "category": ["medication"],
                    "code": {"text": c.drug_name},
                    "patient": subject,
                    "note": [{"text": f"禁忌: {c.reason}"}],
                },
                "contraindications",
                str(i),
            )
    for flag in flags if isinstance(flags, list) else []:
        bundle.add(_flag(flag, subject, bundle.by_key, opened.created_at.date()), "flag", str(flag["code"]))
    return {
        "resourceType": "Bundle",
        "identifier": {"system": MESSAGE_SYSTEM, "value": opened.message_id},
        "type": "collection",
        "timestamp": opened.created_at.isoformat(),
        "entry": bundle.entries,
    }


def _patient(summary: Summary, card_hash: object) -> dict[str, Any]:
    p = summary.patient
    names: list[dict[str, Any]] = []
    for text, representation in ((p.name, "IDE"), (p.kana, "SYL")):
        family, _, given = text.replace("\u3000", " ").partition(" ")
        name: dict[str, Any] = {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                    "valueCode": representation,
                }
            ],
            "use": "official",
            "text": text,
            "family": family,
        }
        if given.strip():
            name["given"] = [given.strip()]
        names.append(name)
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": [JP + "JP_Patient"]},
        "name": names,
        "gender": _GENDER[p.sex],
        "birthDate": p.birth_date.isoformat(),
    }
    if isinstance(card_hash, str):
        patient["identifier"] = [{"system": CARD_HASH_SYSTEM, "value": card_hash}]
    return patient


def _procedure(subject: dict[str, str], category: str, text: str, day: date, facility: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "meta": {"profile": [JP + "JP_Procedure"]},
        "status": "completed",
        "category": {"text": category},
        "code": {"text": text},
        "subject": subject,
        "performedDateTime": day.isoformat(),
        "location": {"display": facility},
    }


def _flag(
    flag: Mapping[str, Any], subject: dict[str, str], by_key: Mapping[tuple[str, ...], str], day: date
) -> dict[str, Any]:
    details = []
    for item in flag.get("items", []):
        section = item.get("section")
        if section in ("medications", "dispensings"):
            key: tuple[str, ...] = (section, item["drug_name"], item["date"])
        elif section == "dialyses":
            key = ("dialyses", item["kind"], item["facility"])
        elif section == "allergies":
            key = ("allergies", item["substance"])
        else:
            key = ("surgeries", item["procedure"], item["date"])
        url = by_key.get(key)
        if url is not None:
            details.append({"url": FLAG_DETAIL, "valueReference": _ref(url)})
    resource: dict[str, Any] = {
        "resourceType": "Flag",
        "status": "active",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical"}
                ]
            }
        ],
        "code": {
            "coding": [{"system": FLAG_SYSTEM, "code": flag["code"], "display": flag["label"]}],
            "text": flag["label"],
        },
        "subject": subject,
        "period": {"start": day.isoformat()},
    }
    if details:
        resource["extension"] = details
    return resource
