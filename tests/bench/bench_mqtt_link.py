"""The MQTT link on an emulated mobile link (`support.linkemu`): outbox put → PUBACK → ack at each
RTT, then a stall (bytes held, as in a tunnel) while a read is queued every 0.5 s: how long after the link
returns the first held message is acknowledged and the outbox is empty again, and how many messages the
gateway's subscriber got twice (QoS 1 allows a duplicate for a publish whose PUBACK was lost). For each
`keepalive_s`: paho's keepalive decides whether the link rides the stall out or reconnects behind it.

Plain script; prints figures, asserts nothing; the last line is JSON.
Env: BENCH_RTTS_MS (30,100,300), BENCH_N (20), BENCH_STALL_S (30), BENCH_KEEPALIVES (10,30).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import MqttLink, tls_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package

from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.config.model import Credential, MqttConfig
from mynabox.payload.envelope import Kind
from mynabox.payload.topics import topic
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from support.linkemu import LinkEmulator
from support.wait import wait_for

DEV = "ambulance-01"
RTTS_MS = [int(v) for v in os.environ.get("BENCH_RTTS_MS", "30,100,300").split(",") if v]
N = int(os.environ.get("BENCH_N", "20"))
STALL_S = float(os.environ.get("BENCH_STALL_S", "30"))
KEEPALIVES = [int(v) for v in os.environ.get("BENCH_KEEPALIVES", "10,30").split(",") if v]
STALL_RTT_MS = 100


class Gateway:
    """A subscriber with the gateway's certificate, directly on the broker: counts what arrives."""

    def __init__(self, kit: DeliveryKit, port: int) -> None:
        files = kit.pki.client(kit.gateway)
        self.received: Counter[bytes] = Counter()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-gw", protocol=paho.MQTTv5)
        self._client.tls_set_context(tls_context(kit.pki.ca_cert, files.cert, files.key))
        self._client.on_message = lambda _c, _u, msg: self.received.update([msg.payload])
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_connect = lambda c, *_: c.subscribe(f"mynabox/{DEV}/summary", qos=1)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        subscribed.wait(10)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def tokens(kit: DeliveryKit, n: int) -> list[tuple[str, bytes]]:
    sealer = kit.sealer(DEV)
    body = {"summary": {"padding": "x" * 3000}}  # about the size of a real sealed summary
    out = []
    for _ in range(n):
        s = sealer.seal(Kind.SUMMARY, body, now=datetime.now(UTC), clock_synced=True)
        out.append((s.message_id, s.token))
    return out


def put(outbox: Outbox, link: MqttLink, message_id: str, token: bytes) -> None:
    outbox.put(topic(DEV, "summary"), message_id, SealedBytes(token), now=datetime.now(UTC))
    link.notify()


def make_link(kit: DeliveryKit, port: int, outbox: Outbox, keepalive_s: int, acked: list) -> MqttLink:
    files = kit.pki.client(DEV)
    settings = MqttConfig(
        "127.0.0.1", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=port, keepalive_s=keepalive_s
    )
    return MqttLink(settings, DEV, outbox, on_acked=lambda mid: acked.append((time.monotonic(), mid)))


def put_to_ack(kit: DeliveryKit, broker: Mosquitto, d: Path, rtt_ms: int) -> float:
    acked: list[tuple[float, str]] = []
    with (
        LinkEmulator(("127.0.0.1", broker.port), rtt_s=rtt_ms / 1000) as emu,
        Outbox(d / f"o{rtt_ms}.db") as ob,
    ):
        link = make_link(kit, emu.port, ob, 30, acked)
        link.start()
        wait_for(lambda: link.online, 20)
        times = []
        for message_id, token in tokens(kit, N):
            started = time.monotonic()
            put(ob, link, message_id, token)
            wait_for(lambda m=message_id: any(a == m for _, a in acked), 20, interval=0.001)
            times.append((time.monotonic() - started) * 1000)
        link.stop()
    return round(statistics.median(times), 1)


def stall(kit: DeliveryKit, broker: Mosquitto, d: Path, keepalive_s: int) -> dict[str, float]:
    acked: list[tuple[float, str]] = []
    gateway = Gateway(kit, broker.port)
    messages = tokens(kit, int(STALL_S / 0.5) + 20)
    with (
        LinkEmulator(("127.0.0.1", broker.port), rtt_s=STALL_RTT_MS / 1000) as emu,
        Outbox(d / f"stall{keepalive_s}.db") as ob,
    ):
        link = make_link(kit, emu.port, ob, keepalive_s, acked)
        link.start()
        wait_for(lambda: link.online, 20)
        for message_id, token in messages[:5]:
            put(ob, link, message_id, token)
        wait_for(lambda: ob.depth() == 0, 20)
        emu.stall(STALL_S)
        ends = time.monotonic() + STALL_S
        for message_id, token in messages[5 : 5 + int(STALL_S / 0.5)]:  # a read every 0.5 s in the tunnel
            put(ob, link, message_id, token)
            time.sleep(max(0.0, min(0.5, ends - time.monotonic())))
        back_at = time.monotonic()
        during = len(acked)
        wait_for(lambda: ob.depth() == 0, 120)
        drained_at = time.monotonic()
        first_after = next((t for t, _ in acked[during:]), float("nan"))
        wait_for(lambda: sum(gateway.received.values()) >= len(messages[: 5 + int(STALL_S / 0.5)]), 10)
        time.sleep(1.0)
        link.stop()
        reconnects = emu.connections - 1
    gateway.stop()
    sent = {t for _, t in messages[: 5 + int(STALL_S / 0.5)]}
    return {
        "first_ack_after_link_back_s": round(first_after - back_at, 2),
        "outbox_empty_after_link_back_s": round(drained_at - back_at, 2),
        "queued_in_stall": len(sent) - 5,
        "delivered": len(set(gateway.received) & sent),
        "duplicates": sum(n - 1 for n in gateway.received.values()),
        "reconnects": reconnects,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        kit = DeliveryKit.create(d / "kit", devices=(DEV,))
        with Mosquitto(kit.broker_tls, d / "broker") as broker:
            puback = {str(rtt): put_to_ack(kit, broker, d, rtt) for rtt in RTTS_MS}
            stalls = {str(k): stall(kit, broker, d, k) for k in KEEPALIVES}
    print(
        "outbox put → PUBACK → ack p50 over the emulated link (ms): "
        + ", ".join(f"{rtt} ms RTT: {ms}" for rtt, ms in puback.items())
    )
    for k, f in stalls.items():
        print(
            f"{STALL_S:g} s stall at {STALL_RTT_MS} ms RTT, keepalive {k} s: first ack "
            f"{f['first_ack_after_link_back_s']} s after the link is back, outbox empty after "
            f"{f['outbox_empty_after_link_back_s']} s; "
            f"{f['delivered']}/{f['queued_in_stall'] + 5} delivered, "
            f"{f['duplicates']} duplicates, {f['reconnects']} reconnects"
        )
    print(json.dumps({"put_to_ack_ms_p50": puback, "stall": stalls, "stall_s": STALL_S}))


if __name__ == "__main__":
    main()
