"""Delivery end to end: outbox -> MQTT link -> mosquitto (TLS, ACL) -> `mynabox receive` in its own process.

Also proves no patient data in plaintext on the box's side: a marker string sealed into a summary is absent
from the outbox database files, the link's log output and the broker's persistence, and present only where
the gateway is meant to have it (the receiver's stdout and JSON files).
"""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.config.model import Credential, MqttConfig
from mynabox.payload.envelope import Kind
from mynabox.payload.topics import topic
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from mynabox_testkit.messages import patient_body
from mynabox_testkit.patients import patient, summary_for
from support.wait import wait_for

pytestmark = pytest.mark.stack

DEV = "ambulance-01"
MARKER = "マーカー患者ZQXJ"

# `mynabox receive` as the lead's CLI will run it: the command module's own parser and run().
_RECEIVE = r"""
import argparse, sys
from mynabox.commands import receive
parser = argparse.ArgumentParser(prog="mynabox receive")
receive.add_arguments(parser)
sys.exit(receive.run(parser.parse_args(sys.argv[1:])))
"""


def test_summary_travels_to_the_receiver_process_and_no_plaintext_stays_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kit = DeliveryKit.create(tmp_path / "kit", devices=(DEV,))
    gw = kit.pki.client(kit.gateway)
    person = patient("warfarin-elderly")
    summary = summary_for(person, date.today())
    assert summary is not None
    doc = summary.to_json()
    doc["patient"]["kana"] = MARKER  # a string that appears nowhere else
    body = {**patient_body(person, datetime.now(UTC))[1], "summary": doc}  # as the box sends it
    box_dir = tmp_path / "box"
    box_dir.mkdir()

    with Mosquitto(kit.broker_tls, tmp_path / "broker") as broker:
        out = tmp_path / "json-out"
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RECEIVE,
                "--broker",
                f"localhost:{broker.port}",
                "--ca",
                str(kit.pki.ca_cert),
                "--cert",
                str(gw.cert),
                "--key",
                str(gw.key),
                "--gateway-key",
                str(kit.gateway_key_file),
                "--device-keys",
                str(kit.device_keys_dir),
                "--json-out",
                str(out),
                "--state-dir",
                str(tmp_path / "gw-state"),
                "--once",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_for(lambda: "gateway 1 mynabox/+/audit" in broker.log()), "no subscription"
            # A tampered message first: rejected with a reason code, never printed.
            files = kit.pki.client(DEV)
            ctx = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
            ctx.load_cert_chain(str(files.cert), str(files.key))
            raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="tamper", protocol=paho.MQTTv5)
            raw.tls_set_context(ctx)
            raw.connect("localhost", broker.port)
            raw.loop_start()
            token = bytearray(
                kit.sealer(DEV).seal(Kind.SUMMARY, body, now=datetime.now(UTC), clock_synced=True).token
            )
            token[-30] ^= 0x01
            raw.publish(topic(DEV, "summary"), bytes(token), qos=1).wait_for_publish(5)
            raw.disconnect()
            raw.loop_stop()

            caplog.set_level(logging.DEBUG)
            with Outbox(box_dir / "outbox.sqlite3") as outbox:
                sealed = kit.sealer(DEV).seal(Kind.SUMMARY, body, now=datetime.now(UTC), clock_synced=True)
                outbox.put(
                    topic(DEV, "summary"), sealed.message_id, SealedBytes(sealed.token), now=datetime.now(UTC)
                )
                files_before_ack = {p.name: p.read_bytes() for p in box_dir.iterdir()}
                mqtt = MqttConfig(
                    "localhost", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=broker.port
                )
                link = MqttLink(mqtt, DEV, outbox)
                link.start()
                try:
                    stdout, stderr = receiver.communicate(timeout=30)
                    assert wait_for(lambda: outbox.depth() == 0)
                finally:
                    link.stop()
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.communicate()
        broker.stop()  # writes its persistence file
        broker_files = {p: p.read_bytes() for p in (tmp_path / "broker").rglob("*") if p.is_file()}

    assert receiver.returncode == 0, stderr
    # The gateway side: readable Japanese, the marker, the flags, the JSON file.
    assert f"患者: {person.name}（{MARKER}）" in stdout and "⚠ 注意:" in stdout
    written = json.loads((out / DEV / f"{sealed.message_id}.json").read_text(encoding="utf-8"))
    assert written["body"]["summary"]["patient"]["kana"] == MARKER
    # The tampered one was rejected with a reason code, and its log line holds no patient data.
    assert "rejected a message on ambulance-01:" in stderr
    # No plaintext on the box side, nor in any log line, nor in the broker's files.
    marker = MARKER.encode("utf-8")
    needles = (marker, person.name.encode("utf-8"))
    for name, data in files_before_ack.items():
        assert not any(n in data for n in needles), f"plaintext in {name}"
    for path in box_dir.iterdir():
        assert not any(n in path.read_bytes() for n in needles), f"plaintext in {path.name}"
    for path, data in broker_files.items():
        assert not any(n in data for n in needles), f"plaintext in {path}"
    assert not any(n.decode() in stderr for n in needles), "patient data in the receiver's log"
    assert not any(n.decode() in caplog.text for n in needles), "patient data in the box's log"
