"""docs/gateway/vectors/: the checked-in vectors are what `mynabox gateway-vectors` writes, the reference
receiver meets every one of them in order, and the JavaScript opener (tests/interop/node, stock jose) refuses
every envelope- and claims-layer one (the claims ones by the same reason) and opens the rest to the same
claims."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.contract import GATEWAY, NODE_DIR, validator, wire_problems  # tests/ is on sys.path
from mynabox.adapters.keyfiles import load_private_key, load_public_key
from mynabox.cli import main
from mynabox.gateway.core import Accepted, Duplicate, ReceiverCore, Rejected
from mynabox.gateway.store import SeenStore
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, Reason
from mynabox.payload.seal import Opener

VECTORS = GATEWAY / "vectors"
RECEIVER_REASONS = {
    "topic",
    "device-topic",
    "kind-topic",
    "device-body",
    "body",
    "message-id-reused",
    "sequence-reused",
    "sequence-stale",
    "key-retired",
}


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))
    return doc


def _messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The vectors that are messages (not an operator's action)."""
    return [v for v in doc["vectors"] if "action" not in v]


def _payload(vector: dict[str, Any]) -> bytes:
    if "payload_repeat" in vector:
        repeat = vector["payload_repeat"]
        return str(repeat["text"]).encode("ascii") * int(repeat["times"])
    return str(vector["payload"]).encode("ascii")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_checked_in_vectors_are_what_the_command_writes(tmp_path: Path) -> None:
    assert main(["gateway-vectors", "--out", str(tmp_path)]) == 0
    assert _files(tmp_path) == _files(VECTORS)


def test_every_refusal_reason_has_a_vector() -> None:
    doc = _doc()
    reasons = {v["expect"]["reason"] for v in _messages(doc) if v["expect"]["outcome"] == "refused"}
    assert reasons == {r.value for r in Reason} | RECEIVER_REASONS
    outcomes = {v["expect"]["outcome"] for v in _messages(doc)}
    assert outcomes == {"accepted", "duplicate", "refused"}
    size = next(v for v in _messages(doc) if v["name"] == "size")
    assert len(_payload(size)) == MAX_MESSAGE_BYTES + 1


def _receiver(doc: dict[str, Any], state: Path) -> ReceiverCore:
    opener = Opener(
        load_private_key(VECTORS / doc["gateway_key"]),
        {device: load_public_key(VECTORS / path) for device, path in doc["device_keys"].items()},
        max_age=timedelta(seconds=doc["max_age_s"]),
        max_skew=timedelta(seconds=doc["max_skew_s"]),
        max_size=MAX_MESSAGE_BYTES,
    )
    return ReceiverCore(opener, SeenStore(state), lambda _o: None, check_bodies=True)


def test_the_reference_receiver_meets_every_vector(tmp_path: Path) -> None:
    doc = _doc()
    core = _receiver(doc, tmp_path / "seen.sqlite3")
    now = datetime.fromisoformat(doc["now"])
    for vector in doc["vectors"]:
        if "action" in vector:
            assert core._seen.forget_device(vector["action"]["forget_device"], now=now)  # type: ignore[attr-defined]
            continue
        verdict = core.handle(vector["topic"], _payload(vector), now=now)
        expect = vector["expect"]
        if expect["outcome"] == "accepted":
            assert isinstance(verdict, Accepted), (vector["name"], verdict)
            o, claims = verdict.opened, expect["claims"]
            opened = {
                "jti": o.message_id,
                "kind": o.kind.value,
                "device": o.device_id,
                "iat": int(o.created_at.timestamp()),
                "clock_synced": o.clock_synced,
                "seq": o.seq,
                "body": dict(o.body),
            }
            assert opened == claims, vector["name"]
            validator("claims").validate(claims)
        elif expect["outcome"] == "duplicate":
            assert isinstance(verdict, Duplicate), (vector["name"], verdict)
        else:
            assert verdict == Rejected(expect["reason"]), vector["name"]


def test_the_javascript_opener_meets_the_envelope_and_claims_vectors() -> None:
    node = shutil.which("node")
    assert node and (NODE_DIR / "node_modules" / "jose").is_dir(), "scripts/install-deps.sh runs npm ci there"
    doc = _doc()
    request = {
        "gateway_key": (VECTORS / doc["gateway_key"]).read_text(),
        "device_keys": {d: (VECTORS / p).read_text() for d, p in doc["device_keys"].items()},
        "tokens": [_payload(v).decode("ascii") for v in _messages(doc)],
        "now": doc["now"],
        "max_age_s": doc["max_age_s"],
        "max_skew_s": doc["max_skew_s"],
    }
    done = subprocess.run(
        [node, str(NODE_DIR / "open.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(_messages(doc))
    for vector, result in zip(_messages(doc), results, strict=True):
        expect = vector["expect"]
        if expect.get("layer") == "envelope":
            assert "refused" in result, vector["name"]
        elif expect.get("layer") == "claims":  # the claim checks, written from the prose: the same reason
            assert result == {"refused": expect["reason"]}, vector["name"]
        else:
            assert "refused" not in result, (vector["name"], result)
        if "claims" in expect:
            assert result == expect["claims"], vector["name"]


def test_accepted_vectors_fit_the_asyncapi_document_as_sent_and_opened() -> None:
    for vector in _messages(_doc()):
        if vector["expect"]["outcome"] == "accepted":
            leaf = vector["topic"].rsplit("/", 1)[1]
            assert wire_problems(leaf, _payload(vector), vector["expect"]["claims"]) == [], vector["name"]


def test_the_audit_hash_as_the_prose_spells_it() -> None:
    """HMAC-SHA-256 keyed with the key file's raw bytes over the ASCII hex text of prev followed by the
    record's canonical JSON (sorted keys, no whitespace, UTF-8): computed here from gateway.md alone."""
    doc = _doc()
    key = (VECTORS / doc["audit_key"]).read_bytes()
    assert len(key) == 32
    audits = [v for v in _messages(doc) if v["expect"].get("claims", {}).get("kind") == "audit"]
    assert audits
    for vector in audits:
        body = vector["expect"]["claims"]["body"]
        canonical = json.dumps(body["record"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        message = body["prev"].encode("ascii") + canonical.encode("utf-8")
        assert hmac.new(key, message, hashlib.sha256).hexdigest() == body["hash"]
        assert (
            hmac.new(key, bytes.fromhex(body["prev"]) + canonical.encode(), hashlib.sha256).hexdigest()
            != body["hash"]
        )
