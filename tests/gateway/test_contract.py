"""The written contract (docs/gateway.md, asyncapi.yaml, schemas/) agrees with the code that speaks it.

What the daemon really publishes is checked against the schemas in tests/integration/test_interop_node.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from gateway.contract import BODY_SCHEMA, validator  # tests/ is on sys.path
from mynabox.adapters.mqtt import MAX_PACKET_BYTES, STATE_KEYS
from mynabox.gateway.subscriber import SESSION_EXPIRY_S, SUBSCRIPTIONS
from mynabox.payload import envelope
from mynabox.payload.bodies import body_problem
from mynabox.payload.envelope import Claims, EnvelopeError, Kind
from mynabox.payload.topics import LEAVES
from mynabox.payload.topics import ROOT as TOPIC_ROOT
from mynabox_testkit.messages import audit_body, patient_body
from mynabox_testkit.patients import PATIENTS, patient

NOW = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)

DOCS = Path(__file__).resolve().parents[2] / "docs"
GATEWAY = DOCS / "gateway"


def test_asyncapi_channels_are_the_topics_the_box_publishes() -> None:
    api = yaml.safe_load((GATEWAY / "asyncapi.yaml").read_text())
    assert api["asyncapi"].startswith("3.")
    addresses = {ch["address"] for ch in api["channels"].values()}
    assert addresses == {f"{TOPIC_ROOT}/{{device}}/{leaf}" for leaf in LEAVES}
    for name, message in api["components"]["messages"].items():
        ref = message["payload"].get("$ref")
        sealed = message["contentType"] == "application/jose"
        assert (ref == "#/components/schemas/compactJwe") == sealed, name  # the wire, not the opened body
        assert ("x-opened-claims" in message) == sealed, name
    qos = {op["bindings"]["mqtt"]["qos"] for op in api["operations"].values()}
    assert qos == {1}
    device = api["components"]["parameters"]["device"]["description"]
    assert envelope.DEVICE_ID_PATTERN in device


def test_schemas_are_valid_and_say_what_the_code_says() -> None:
    schemas = {p.name: json.loads(p.read_text()) for p in (GATEWAY / "schemas").glob("*.schema.json")}
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    claims = schemas["claims.schema.json"]
    assert set(claims["required"]) == envelope.CLAIMS
    assert claims["properties"]["device"]["pattern"] == f"^{envelope.DEVICE_ID_PATTERN}$"
    sealed = [k.value for k in envelope.Kind if k is not envelope.Kind.STATE]  # state is never sealed
    assert claims["properties"]["kind"]["enum"] == sealed
    assert claims["properties"]["seq"]["maximum"] == envelope.MAX_SEQ
    assert set(schemas["state.schema.json"]["properties"]) == STATE_KEYS


def test_the_prose_contract_names_the_numbers_the_code_uses() -> None:
    text = (DOCS / "gateway.md").read_text()
    for value in (
        envelope.JWE_ALG,
        envelope.JWE_ENC,
        envelope.JWS_ALG,
        envelope.JWS_TYP,
        envelope.DEVICE_ID_PATTERN,
        f"{envelope.MAX_MESSAGE_BYTES:,}",
        f"{MAX_PACKET_BYTES:,}",
        *SUBSCRIPTIONS,
    ):
        assert value in text, value
    for name in sorted(envelope.CLAIMS):
        assert re.search(rf"`{name}`", text), name


# --- the schemas are the contract: complete, relative, tied to the box's own ----------------------------


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_ref_is_relative_and_names_a_file_of_the_contract() -> None:
    documents = [*(GATEWAY / "schemas").glob("*.schema.json"), GATEWAY / "asyncapi.yaml"]
    for path in documents:
        doc = yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())
        for ref in _refs(doc):
            assert "://" not in ref and not ref.startswith("/"), (path.name, ref)
            target = ref.split("#", 1)[0]
            if target:
                assert (path.parent / target).is_file(), (path.name, ref)
    text = (DOCS / "gateway.md").read_text()
    assert "firmware/" not in text and "tests/" not in text  # the contract speaks only of docs/gateway/


def test_the_summary_schema_is_the_one_the_box_is_defined_by() -> None:
    """Byte for byte: docs/gateway/schemas/summary.schema.json cannot drift from the firmware's."""
    box = resources.files("mynabox").joinpath("data", "summary.schema.json").read_bytes()
    assert (GATEWAY / "schemas" / "summary.schema.json").read_bytes() == box
    plugin = resources.files("mynabox").joinpath("data", "broker", "mynabox_retain.c").read_bytes()
    assert (GATEWAY / "broker" / "mynabox_retain.c").read_bytes() == plugin


def _claims(**override: object) -> dict[str, object]:
    kind, body, _ = patient_body(patient("warfarin-elderly"), NOW)
    claims: dict[str, object] = {
        "jti": "ab" * 16,
        "kind": kind.value,
        "device": "amb-1",
        "iat": int(NOW.timestamp()),
        "clock_synced": True,
        "seq": 5,
        "body": body,
    }
    return {**claims, **override}


def test_integers_refuse_fractions_with_a_parser_that_keeps_them_apart() -> None:
    """JSON Schema's integer admits 5.0 (a stock validator passes it); the contract does not, and the
    receiver, parsing with Python's json, refuses it."""
    sessions = _claims(body=patient_body(patient("dialysis"), NOW)[1])
    dialysis = next(f for f in sessions["body"]["flags"] if f["code"] == "dialysis")  # type: ignore[index]
    dialysis["items"][0]["sessions"] = float(dialysis["items"][0]["sessions"])
    assert not validator("claims").is_valid(json.loads(json.dumps(sessions)))  # in a referenced file too
    for override in ({"seq": 5.0}, {"iat": float(int(NOW.timestamp()))}):
        text = json.dumps(_claims(**override))
        assert ".0" in text
        parsed = json.loads(text)
        assert validator("claims", strict=False).is_valid(parsed)  # the trap
        assert not validator("claims").is_valid(parsed)
        with pytest.raises(EnvelopeError):
            Claims.from_json(text.encode())
    assert validator("claims").is_valid(json.loads(json.dumps(_claims())))


def test_body_is_tied_to_kind() -> None:
    check = validator("claims")
    assert check.is_valid(_claims())
    assert not check.is_valid(_claims(kind="audit"))  # a summary's body under kind audit
    assert not check.is_valid(_claims(kind="state"))
    card = patient_body(patient("not-registered"), NOW)[1]
    assert check.is_valid(_claims(kind="card-record", body=card))
    assert not check.is_valid(_claims(body=card))
    audit = audit_body("amb-1", time=NOW, message_id="cd" * 16, shown=["anticoagulant"])
    assert check.is_valid(_claims(kind="audit", body=audit))


@pytest.mark.parametrize("key", [p.key for p in PATIENTS])
def test_what_the_box_sends_meets_the_schemas_and_the_receiver_check_alike(key: str) -> None:
    kind, body, shown = patient_body(patient(key), NOW)
    validator(BODY_SCHEMA[kind.value]).validate(body)
    assert body_problem(kind, "amb-1", body) is None
    if kind is Kind.SUMMARY:
        assert [f["code"] for f in body["flags"]] == list(shown)  # type: ignore[union-attr]


DAMAGE = [
    lambda b: b["read"].update(card_hash="X" * 16),
    lambda b: b["read"]["certificate_check"].pop("status"),
    lambda b: b["read"].update(consent="yes"),
    lambda b: b["flags"][0].update(code="aspirin"),
    lambda b: b["flags"][0].update(items=[]),
    lambda b: b["flags"][0]["items"][0].update(yj_code="warfarin"),
    lambda b: b["flags"][0]["items"][0].update(section="visits"),
    lambda b: b["flags"][0]["items"][0].pop("date"),
    lambda b: b["flags"][0]["items"][0].update(extra=1),
    lambda b: b["flags"][0].update(
        items=[{"section": "surgeries", "procedure": "x", "facility": "y", "date": "2026-01-01"}]
    ),
    lambda b: b["summary"].update(schema_version=2),
    lambda b: b.pop("flags"),
    lambda b: b.update(extra=1),
]


@pytest.mark.parametrize("damage", DAMAGE)
def test_the_schemas_and_the_receiver_refuse_the_same_damaged_bodies(damage) -> None:
    kind, body, _ = patient_body(patient("warfarin-elderly"), NOW)
    damage(body)
    assert not validator("summary-message").is_valid(body)
    assert body_problem(kind, "amb-1", body) == "body"


def test_the_prose_closes_the_rule_gaps() -> None:
    """What an integrator could not find before (issue 21), each named where the rules are."""
    text = (DOCS / "gateway.md").read_text()
    for phrase in (
        f"{SESSION_EXPIRY_S:,} s",  # the session expiry's value
        "**hex text**",  # the audit hash input
        "**raw bytes**",  # the audit key's format
        "32 random bytes",
        "device-body",  # the forgery
        "message-id-reused",  # a jti under a new seq
        "before the PUBACK",  # stored before the acknowledgement
        "survive a restart",
        "does not use up",  # a refused body and its seq
        "**topic's**",  # which device a refusal log names
        "`record.message` = that summary's",  # the audit <-> summary link
        "`state` is never",
        "`kty` = `EC`",
    ):
        assert phrase in text, phrase
