"""A gateway in another language opens what the real daemon published: JavaScript with the stock `jose`
library (tests/interop/node/open.mjs, written from docs/gateway.md), against the same messages our opener
reads. Traps it documents: the JWE's plaintext is a compact JWS (``cty: JWT``), not a JWT claims set, so
`jwtDecrypt` is the wrong call; the routing claims in the JWE header must be checked against the signed ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.contract import BODY_SCHEMA, validator, wire_problems
from mynabox.payload.envelope import Kind
from mynabox_testkit.stack import BoxStack
from support.daemon import start_daemon, tap
from support.notify import NotifySocket
from support.wait import wait_for

from .subscriber import Subscriber

pytestmark = pytest.mark.stack
NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"


@pytest.fixture(scope="module")
def stack() -> Iterator[BoxStack]:
    with BoxStack(device_id="amb-interop", consent_default="oral") as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


def node_open(stack: BoxStack, tokens: list[bytes]) -> list[dict[str, object]]:
    node = shutil.which("node")
    assert node and (NODE_DIR / "node_modules" / "jose").is_dir(), "scripts/install-deps.sh runs npm ci there"
    kit = stack.kit
    assert kit is not None
    request = {
        "gateway_key": kit.gateway_key_file.read_text(),
        "device_keys": {p.stem: p.read_text() for p in kit.device_keys_dir.glob("*.pem")},
        "tokens": [t.decode("ascii") for t in tokens],
    }
    done = subprocess.run(
        [node, str(NODE_DIR / "open.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_node_jose_opens_what_the_daemon_published(stack: BoxStack, tmp_path: Path) -> None:
    assert stack.kit is not None
    sub = Subscriber(stack, "gw-interop", "mynabox/amb-interop/#")
    notify, log = NotifySocket(tmp_path / "notify.sock"), tmp_path / "daemon.log"
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        for n, key in enumerate(("warfarin-elderly", "not-registered"), 1):
            card = tap(stack, key)
            try:
                assert wait_for(lambda n=n: len(sub.payloads("audit")) >= n, 20)
            finally:
                card.remove()
    finally:
        daemon.terminate()
        daemon.wait(10)
        notify.close()
        sub.close()
    tokens = sub.payloads("summary") + sub.payloads("audit")
    assert len(tokens) == 4
    ours = [stack.kit.opener().open(t, now=datetime.now(UTC)) for t in tokens]
    theirs = node_open(stack, tokens)
    for opened, claims in zip(ours, theirs, strict=True):
        assert "refused" not in claims, claims
        assert claims["jti"] == opened.message_id and claims["device"] == opened.device_id == "amb-interop"
        assert claims["kind"] == opened.kind.value and claims["seq"] == opened.seq
        assert claims["body"] == dict(opened.body)
    assert {o.kind for o in ours} == {Kind.SUMMARY, Kind.CARD_RECORD, Kind.AUDIT}

    # The written contract holds for what the daemon really sent: claims, each body, the retained state.
    for claims in theirs:
        validator("claims").validate(claims)  # the body too: tied to the kind
        validator(BODY_SCHEMA[str(claims["kind"])]).validate(claims["body"])
    states = sub.payloads("state")
    assert states
    for state in states:
        validator("state").validate(json.loads(state))
    assert set(sub.payloads("availability")) <= {b"online", b"offline"}

    # Every captured message as sent fits the AsyncAPI document the stock parser read (offline), and each
    # sealed one's opened claims fit its x-opened-claims.
    for token, claims in zip(tokens, theirs, strict=True):
        leaf = "audit" if claims["kind"] == "audit" else "summary"
        assert wire_problems(leaf, token, claims) == [], claims["kind"]
    for leaf in ("state", "availability"):
        for payload in sub.payloads(leaf):
            assert wire_problems(leaf, payload) == [], leaf
    # The summary carries the flags the box showed; the audit record links to it.
    summary = next(c for c in theirs if c["kind"] == "summary")
    audit = next(
        c for c in theirs if c["kind"] == "audit" and c["body"]["record"]["message"] == summary["jti"]
    )
    assert [f["code"] for f in summary["body"]["flags"]] == audit["body"]["shown"] == ["anticoagulant"]
    assert audit["body"]["record"]["card"] == summary["body"]["read"]["card_hash"]

    # The same checks refuse what they must: a swapped ciphertext byte, another device's routing header.
    tampered = bytearray(tokens[0])
    tampered[-30] ^= 1 if tampered[-30] != ord("A") else 2
    refused = node_open(stack, [bytes(tampered)])
    assert "refused" in refused[0]
