"""`mynabox receive` as its own process on mosquitto (TLS, ACL) against a box gone bad.

A box with a valid key can sign anything. Its messages must neither stall the receiver for every other box
(the broker stops delivering once 20 are unacknowledged) nor drive the operator's terminal.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.payload.envelope import Kind
from mynabox.payload.topics import topic
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from mynabox_testkit.messages import patient_body
from mynabox_testkit.patients import patient, summary_for
from support.envelopes import seal_claims
from support.wait import wait_for

pytestmark = pytest.mark.stack

BAD = "amb-bad"
GOOD = "amb-good"
MYNABOX = str(Path(sys.executable).with_name("mynabox"))
MARKER = "マーカー患者QKZV"  # sealed into every hostile body: must never reach a log


@dataclass
class Gateway:
    """`mynabox receive` runs: each ``start`` is a new process on the same state directory and session."""

    kit: DeliveryKit
    broker: Mosquitto
    dir: Path
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def state_dir(self) -> Path:
        return self.dir / "gw-state"

    @property
    def stdout(self) -> Path:
        return self.dir / f"receiver-{self.runs}.out"

    @property
    def stderr(self) -> Path:
        return self.dir / f"receiver-{self.runs}.err"

    def start(self) -> None:
        self.runs += 1
        gw = self.kit.pki.client(self.kit.gateway)
        args = [
            *("--broker", f"localhost:{self.broker.port}", "--ca", str(self.kit.pki.ca_cert)),
            *("--cert", str(gw.cert), "--key", str(gw.key), "--gateway-key", str(self.kit.gateway_key_file)),
            *("--device-keys", str(self.kit.device_keys_dir), "--state-dir", str(self.state_dir)),
            *("--json-out", str(self.dir / "json-out")),
        ]
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen([MYNABOX, "receive", *args], stdout=out, stderr=err)
        subscribed = "gateway 1 mynabox/+/audit"  # the broker names the client by its certificate CN
        assert wait_for(lambda: self.broker.log().count(subscribed) == self.runs), "no subscription"

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="surrogateescape")

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def quarantined(self) -> list[str]:
        listing = subprocess.run(
            [MYNABOX, "receive", "--quarantined", "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return listing.stdout.splitlines()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    kit = DeliveryKit.create(tmp_path / "kit", devices=(BAD, GOOD))
    with Mosquitto(kit.broker_tls, tmp_path / "broker") as broker:
        gateway = Gateway(kit, broker, tmp_path)
        gateway.start()
        try:
            yield gateway
        finally:
            if gateway.process is not None and gateway.process.poll() is None:
                gateway.process.kill()
                gateway.process.wait()


def publish(gateway: Gateway, device: str, messages: list[tuple[str, bytes]]) -> None:
    """As the box's certificate would: QoS 1, each acknowledged by the broker."""
    kit = gateway.kit
    files = kit.pki.client(device)
    ctx = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
    ctx.load_cert_chain(str(files.cert), str(files.key))
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"mynabox-{device}", protocol=paho.MQTTv5)
    client.tls_set_context(ctx)
    client.connect("localhost", gateway.broker.port)
    client.loop_start()
    try:
        for leaf, token in messages:
            client.publish(topic(device, leaf), token, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def claims(sender: str, number: int, override: dict[str, object] | None = None) -> dict[str, object]:
    doc: dict[str, object] = {
        "jti": uuid.uuid4().hex,
        "kind": "summary",
        "device": sender,
        "iat": int(datetime.now(UTC).timestamp()),
        "clock_synced": True,
        "body": {"note": MARKER},
        "seq": number,
    }
    doc.update(override or {})
    return doc


HOSTILE: list[dict[str, object]] = [
    {"iat": 253402300800},  # year 10000: the attack that stalled the receiver
    {"iat": 253402300799},  # 9999-12-31 UTC, year 10000 in JST
    {"iat": 253402300800, "clock_synced": False},
    {"iat": 10**30},
    {"iat": 2**40 - 1, "clock_synced": False},
    {"iat": -1},
    {"iat": 1.5},
    {"iat": 1e308},
    {"iat": True},
    {"iat": "2026-04-01"},
    {"iat": None},
    {"kind": ["summary"]},
    {"kind": {"summary": 1}},
    {"kind": 3},
    {"clock_synced": 1},
    {"clock_synced": "yes"},
    {"seq": 0},
    {"seq": -7},
    {"seq": 2**64},
    {"seq": 1.0},
    {"seq": False},
    {"body": ["x", MARKER]},
    {"body": MARKER},
    {"device": GOOD},
    {"jti": 12345},
    {"extra": MARKER},
]
# More than the broker's in-flight window (20) of the kind that raised: each unacknowledged one held a slot.
HOSTILE += [{"iat": 253402300800 + n * 86400, "clock_synced": n % 2 == 0} for n in range(22)]


def test_hostile_signed_messages_do_not_stall_the_receiver_for_other_boxes(gateway: Gateway) -> None:
    kit = gateway.kit
    bad = kit.sealer(BAD)
    messages = [("summary", seal_claims(bad, claims(BAD, 100 + n, h))) for n, h in enumerate(HOSTILE)]
    old_format = {k: v for k, v in claims(BAD, 200).items() if k != "seq"}
    messages.append(("audit", seal_claims(bad, {**old_format, "kind": "audit"})))
    assert len(messages) > 45
    publish(gateway, BAD, messages)

    kind, body, _ = patient_body(patient("healthy"), datetime.now(UTC))
    good = kit.sealer(GOOD).seal(kind, body, now=datetime.now(UTC), clock_synced=True)
    publish(gateway, GOOD, [("summary", good.token)])
    assert wait_for(lambda: good.message_id in gateway.output(), 30), gateway.log()
    assert gateway.stop() == 0

    log = gateway.log()
    assert log.count("rejected a message on amb-bad:") == len(messages), log
    assert MARKER not in log and "Traceback" not in log
    # Every one was acknowledged: a restarted receiver (same persistent session) gets nothing again.
    gateway.start()
    time.sleep(1.5)
    assert gateway.stop() == 0
    again = [line for line in gateway.log().splitlines() if "receiver connected" not in line]
    assert again == []  # before the fix: every unacknowledged one came back and failed again
    listing = gateway.quarantined()
    assert len(listing) == len(messages)
    reasons = [line.split()[4] for line in listing]
    assert reasons.count("claims") == len(HOSTILE) - 1 and "no-sequence" in reasons
    assert "mismatch" in reasons  # the device claim that names another box
    assert all(f"mynabox/{BAD}/" in line for line in listing)
    assert MARKER not in gateway.output()


def test_device_text_reaches_the_terminal_neutralised(gateway: Gateway) -> None:
    kit = gateway.kit
    sealer = kit.sealer(BAD)
    now = datetime.now(UTC)
    person = patient("warfarin-elderly")
    summary = summary_for(person, date.today())
    assert summary is not None
    doc = summary.to_json()
    # The summary model refuses C0 controls and lone surrogates, not format characters or U+2028.
    doc["patient"]["name"] = "\u202e" + person.name + "\u2066x\u2069"
    doc["medications"][0]["drug_name"] = "ワルファリン\u200b\u2028K錠"
    doc["medications"][0]["prescriber"] = "病院\u061c\ufeff\U000e0041"
    hostile_keys = {
        "card_record": {"certificate": "AA==", "reason": "lookup-unavailable"},
        "\x1b[2J\x1b[H": 1,  # clear screen
        "\x1b]0;pwned\x07": 2,  # window title
        "\u009b31m": 3,  # C1 CSI
        "\u202etxt.exe": 4,
        "lone\ud800": 5,
    }
    # Our sealer refuses a lone surrogate; a hostile box seals its own bytes.
    card_token = seal_claims(sealer, claims(BAD, 1, {"kind": "card-record", "body": hostile_keys}))
    audit = sealer.seal(
        Kind.AUDIT,
        {"record": {"outcome": "\x1b[2J\x1b]2;title\x07ok\r\u0085"}},
        now=now,
        clock_synced=True,
        seq=2,
    )
    body = {**patient_body(person, now)[1], "summary": doc}  # read and flags as the box sends them
    summ = sealer.seal(Kind.SUMMARY, body, now=now, clock_synced=True, seq=3)
    publish(gateway, BAD, [("summary", card_token), ("audit", audit.token), ("summary", summ.token)])
    assert wait_for(lambda: summ.message_id in gateway.output(), 30), gateway.log()
    assert gateway.stop() == 0

    out = gateway.output()
    # The card record and the audit record are off their schemas: refused before anything prints them.
    assert [line.split()[4] for line in gateway.quarantined()] == ["body", "body"]
    raw = {ch for ch in out if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")}
    assert not raw, f"raw control/format characters printed: {sorted(map(hex, map(ord, raw)))}"
    assert "pwned" not in out and "title" not in out
    for shown in (
        f"患者: \\u202e{person.name}\\u2066x\\u2069",
        "ワルファリン\\u200b\\u2028K錠",
        "病院\\u061c\\ufeff\\U000e0041",
    ):
        assert shown in out, shown
    assert "⚠ 注意:" in out  # the summary is still rendered, flags and all
