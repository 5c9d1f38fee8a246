"""The network path with the box's own certificates: the summary service answers, the broker accepts the
box, a sealed test message gets its PUBACK, and the bench gateway's side opens it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.clock import clock_synced
from mynabox.adapters.keyfiles import load_private_key, load_public_key
from mynabox.adapters.mqtt import tls_context
from mynabox.commands.selftest import _broker, _summary
from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.gateway.subscriber import Receiver
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened, Sealer

from .bench import Bench
from .measure import Measurement

pytestmark = pytest.mark.hil
NET_TIMEOUT_S = 10.0


@pytest.mark.needs("summary")
@pytest.mark.check("summary service: answers the box's certificate")
def test_summary_service_answers_with_the_box_certificate(bench: Bench) -> None:
    problem = _summary(bench.config, NET_TIMEOUT_S)
    assert problem is None, f"summary service {bench.config.summary.url}: {problem}"


@pytest.mark.needs("broker")
@pytest.mark.check("broker: accepts the box's certificate")
def test_broker_accepts_the_box_certificate(bench: Bench) -> None:
    problem = _broker(bench.config, NET_TIMEOUT_S)
    assert problem is None, f"broker {bench.config.mqtt.host}:{bench.config.mqtt.port}: {problem}"


@pytest.mark.needs("broker")
@pytest.mark.check("broker: a sealed bench message acked, the gateway side opens it")
def test_sealed_message_acked_and_opened_by_the_gateway(
    bench: Bench,
    tmp_path: Path,
    measure: Callable[[str, float], Measurement],
    proved: Callable[[str], None],
) -> None:
    cfg = bench.config
    settings, opener = bench.gateway()
    opened: list[tuple[float, Opened]] = []
    arrived = threading.Event()

    def sink(message: Opened) -> None:
        opened.append((time.monotonic(), message))
        arrived.set()

    seen = SeenStore(tmp_path / "seen.db")
    receiver = Receiver(settings, ReceiverCore(opener, seen, sink))
    receiver.start()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{cfg.device.id}-hil", protocol=paho.MQTTv5)
    try:
        assert receiver.subscribed.wait(NET_TIMEOUT_S), (
            f"the gateway side did not subscribe: {receiver.refused}"
        )
        sealer = Sealer(
            cfg.device.id,
            load_private_key(cfg.sealing.device_key.path),
            load_public_key(cfg.sealing.gateway_public_key),
        )
        sealed = sealer.seal(
            Kind.AUDIT,
            {"bench": "hil", "device": cfg.device.id, "note": "bench test message, not an audit record"},
            now=datetime.now(UTC),
            clock_synced=clock_synced(),
            seq=1,  # opened by this test's own fresh receiver; the vehicle's gateway never sees bench traffic
        )
        client.tls_set_context(tls_context(cfg.mqtt.ca_file, cfg.mqtt.client_cert, cfg.mqtt.client_key.path))
        connected, acked = threading.Event(), threading.Event()
        refused: list[str] = []
        acked_at: list[float] = []

        def on_connect(_c: object, _u: object, _f: object, code: paho.ReasonCode, _p: object) -> None:
            if code.is_failure:
                refused.append(str(code))
            connected.set()

        def on_publish(_c: object, _u: object, _mid: int, code: paho.ReasonCode, _p: object) -> None:
            acked_at.append(time.monotonic())
            if code.is_failure:
                refused.append(f"PUBACK {code}")
            acked.set()

        client.on_connect, client.on_publish = on_connect, on_publish
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=10)
        client.loop_start()
        assert connected.wait(NET_TIMEOUT_S) and not refused, f"the broker refused the box: {refused}"
        sent = time.monotonic()
        client.publish(f"mynabox/{cfg.device.id}/audit", sealed.token, qos=1)
        assert acked.wait(NET_TIMEOUT_S), f"no PUBACK within {NET_TIMEOUT_S:g} s"
        assert not refused, f"the broker refused the message: {refused}"
        acked_ms = measure("broker_round_trip_ms", (acked_at[0] - sent) * 1000).value
        assert arrived.wait(NET_TIMEOUT_S), f"the gateway side opened nothing within {NET_TIMEOUT_S:g} s"
        at, message = opened[0]
        assert message.message_id == sealed.message_id and message.device_id == cfg.device.id
        opened_ms = measure("gateway_open_ms", (at - sent) * 1000).value
        proved(
            f"broker: a sealed bench message acked in {acked_ms:.0f} ms, "
            f"opened by the gateway side in {opened_ms:.0f} ms"
        )
    finally:
        client.disconnect()
        client.loop_stop()
        receiver.stop()
        seen.close()
