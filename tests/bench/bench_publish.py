"""Delivery figures on loopback: publish -> PUBACK over TLS, outbox put -> ack through the link, commit cost.

Plain script (`python tests/bench/bench_publish.py`); the last line is JSON. Printed, never asserted.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import MqttLink, tls_context
from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.config.model import Credential, MqttConfig
from mynabox.payload.envelope import Kind
from mynabox.payload.topics import topic
from mynabox_testkit.broker import DeliveryKit, Mosquitto

DEV = "ambulance-01"
N = 200


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def publish_to_puback(kit: DeliveryKit, port: int, payload: bytes, device: str = DEV) -> list[float]:
    files = kit.pki.client(device)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device}", protocol=paho.MQTTv5)
    client.tls_set_context(tls_context(kit.pki.ca_cert, files.cert, files.key))
    client.connect("localhost", port)
    client.loop_start()
    try:
        times = []
        for _ in range(N):
            start = time.perf_counter()
            client.publish(topic(device, "summary"), payload, qos=1).wait_for_publish(5)
            times.append((time.perf_counter() - start) * 1000)
        return times
    finally:
        client.disconnect()
        client.loop_stop()


def put_to_ack(kit: DeliveryKit, port: int, tokens: list[tuple[str, bytes]], db: Path) -> list[float]:
    files = kit.pki.client(DEV)
    with Outbox(db) as outbox:
        mqtt = MqttConfig("localhost", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=port)
        link = MqttLink(mqtt, DEV, outbox)
        link.start()
        while not link.online:
            time.sleep(0.01)
        times = []
        try:
            for message_id, token in tokens:
                start = time.perf_counter()
                outbox.put(topic(DEV, "summary"), message_id, SealedBytes(token), now=datetime.now(UTC))
                link.notify()
                while outbox.depth():
                    time.sleep(0.0002)
                times.append((time.perf_counter() - start) * 1000)
        finally:
            link.stop()
        return times


def commits_per_s(db: Path, synchronous: str, payload: bytes) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
    start = time.perf_counter()
    for _ in range(500):
        conn.execute("INSERT INTO t (b) VALUES (?)", (payload,))
    rate = 500 / (time.perf_counter() - start)
    conn.close()
    return round(rate)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        kit = DeliveryKit.create(d / "kit", devices=(DEV,))
        sealer = kit.sealer(DEV)
        body = {"summary": {"padding": "x" * 3000}}
        sealed = [sealer.seal(Kind.SUMMARY, body, now=datetime.now(UTC), clock_synced=True) for _ in range(N)]
        with Mosquitto(kit.broker_tls, d / "broker") as broker:
            pub = publish_to_puback(kit, broker.port, sealed[0].token)
            link = put_to_ack(
                kit, broker.port, [(s.message_id, s.token) for s in sealed], d / "outbox.sqlite3"
            )
        full = commits_per_s(d / "full.sqlite3", "FULL", sealed[0].token)
        normal = commits_per_s(d / "normal.sqlite3", "NORMAL", sealed[0].token)
    figures = {
        "payload_bytes": len(sealed[0].token),
        "publish_to_puback_ms_p50": p50(pub),
        "outbox_put_to_ack_ms_p50": p50(link),
        "sqlite_wal_full_commits_per_s": full,
        "sqlite_wal_normal_commits_per_s": normal,
    }
    print(f"publish -> PUBACK (TLS, QoS 1, loopback) p50 {figures['publish_to_puback_ms_p50']} ms")
    print(f"outbox put -> link -> PUBACK -> ack p50 {figures['outbox_put_to_ack_ms_p50']} ms")
    print(f"SQLite WAL commits/s: FULL {full}, NORMAL {normal}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
