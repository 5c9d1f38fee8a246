"""The written contract (docs/gateway.md, asyncapi.yaml, schemas/) agrees with the code that speaks it.

What the daemon really publishes is checked against the schemas in tests/integration/test_interop_node.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from mynabox.adapters.mqtt import MAX_PACKET_BYTES, STATE_KEYS
from mynabox.gateway.subscriber import SUBSCRIPTIONS
from mynabox.payload import envelope
from mynabox.payload.topics import LEAVES
from mynabox.payload.topics import ROOT as TOPIC_ROOT

DOCS = Path(__file__).resolve().parents[2] / "docs"
GATEWAY = DOCS / "gateway"


def test_asyncapi_channels_are_the_topics_the_box_publishes() -> None:
    api = yaml.safe_load((GATEWAY / "asyncapi.yaml").read_text())
    assert api["asyncapi"].startswith("3.")
    addresses = {ch["address"] for ch in api["channels"].values()}
    assert addresses == {f"{TOPIC_ROOT}/{{device}}/{leaf}" for leaf in LEAVES}
    for message in api["components"]["messages"].values():
        ref = message["payload"].get("$ref")
        if ref is not None:
            assert (GATEWAY / ref).is_file(), ref
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
    assert claims["properties"]["kind"]["enum"] == [k.value for k in envelope.Kind]
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
