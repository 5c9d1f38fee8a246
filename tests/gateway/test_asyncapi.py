"""docs/gateway/asyncapi.yaml as the stock @asyncapi/parser reads it, offline: its payloads are what is on the
wire (a compact JWE string, JSON for state, text for availability), its x-opened-claims what a sealed message
holds once opened. Sealed by the box's own sealer here; the daemon's real messages in test_interop_node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from gateway.contract import GATEWAY, NODE_DIR, asyncapi, wire_problems  # tests/ is on sys.path
from gateway.receiving import DEV, NOW
from mynabox.payload.seal import Opened
from mynabox_testkit.broker import DeliveryKit
from mynabox_testkit.messages import audit_body, patient_body
from mynabox_testkit.patients import PATIENTS


def _claims(opened: Opened) -> dict[str, object]:
    return {
        "jti": opened.message_id,
        "kind": opened.kind.value,
        "device": opened.device_id,
        "iat": int(opened.created_at.timestamp()),
        "clock_synced": opened.clock_synced,
        "seq": opened.seq,
        "body": json.loads(json.dumps(dict(opened.body))),
    }


def test_the_document_parses_offline_with_the_stock_parser() -> None:
    api = asyncapi()
    assert api["version"].startswith("3.")
    assert set(api["messages"]) == {"availability", "state", "summary", "cardRecord", "audit"}
    for name in ("summary", "cardRecord", "audit"):
        message = api["messages"][name]
        assert message["contentType"] == "application/jose" and message["payload"]["type"] == "string"
        assert message["opened"] is not None


@pytest.mark.parametrize("key", [p.key for p in PATIENTS])
def test_sealed_messages_validate_as_sent_and_opened(kit: DeliveryKit, key: str) -> None:
    kind, body, shown = patient_body(next(p for p in PATIENTS if p.key == key), NOW)
    sealed = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=1)
    opened = kit.opener().open(sealed.token, now=NOW)
    assert wire_problems("summary", sealed.token, _claims(opened)) == []
    audit = audit_body(DEV, time=NOW, message_id=sealed.message_id, shown=shown)
    sealed_audit = kit.sealer(DEV).seal(kind.AUDIT, audit, now=NOW, clock_synced=True, seq=2)
    opened_audit = kit.opener().open(sealed_audit.token, now=NOW)
    assert wire_problems("audit", sealed_audit.token, _claims(opened_audit)) == []
    # The opened body of one kind does not pass as another's, nor the JSON as the wire payload.
    assert wire_problems("audit", sealed.token, _claims(opened))
    assert wire_problems("summary", json.dumps(_claims(opened)).encode(), _claims(opened))


def test_what_the_document_refuses(kit: DeliveryKit) -> None:
    kind, body, _ = patient_body(PATIENTS[1], NOW)
    sealed = kit.sealer(DEV).seal(kind, body, now=NOW, clock_synced=True, seq=1)
    claims = _claims(kit.opener().open(sealed.token, now=NOW))
    assert wire_problems("summary", sealed.token.rsplit(b".", 1)[0], claims)  # four parts
    assert wire_problems("summary", sealed.token, {**claims, "seq": 5.0})  # a fraction
    assert wire_problems("summary", sealed.token, {**claims, "jti": uuid.uuid4().hex.upper()})
    assert wire_problems("state", b'{"version": "1"}')
    assert wire_problems("availability", b"maybe")
    assert wire_problems("availability", b"online") == []
    state = {
        "version": "0.1.0",
        "state": "idle",
        "reader_present": True,
        "outbox_depth": 0,
        "clock_synced": True,
    }
    assert wire_problems("state", json.dumps(state).encode()) == []
    assert wire_problems("state", json.dumps({**state, "outbox_depth": 1.0}).encode())


def test_the_parser_needs_no_network() -> None:
    """In a network namespace of its own (no interface but a down loopback) the document still parses."""
    unshare, node = shutil.which("unshare"), shutil.which("node")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a network namespace")
    assert node is not None
    done = subprocess.run(
        [unshare, "--net", "--", node, str(NODE_DIR / "asyncapi.mjs"), str(GATEWAY / "asyncapi.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["messages"].keys() == asyncapi()["messages"].keys()
