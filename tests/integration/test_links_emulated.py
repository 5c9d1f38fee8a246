"""Both network links of the box on an emulated mobile link (`support.linkemu`, 100 ms RTT): the
summary lookup on its kept connection and the MQTT link to a real mosquitto, each through a stall as in a
tunnel. What must hold is functional: the lookup ends at its limit during the stall, and the next one finds
the summary once the link is back; every message queued during the stall arrives, with no duplicate beyond
what QoS 1 allows (a publish whose PUBACK was held), and nothing stays in the outbox.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import MqttLink, tls_context
from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.adapters.summary_client import HttpsSummaryClient
from mynabox.config.model import Credential, MqttConfig
from mynabox.payload.envelope import Kind
from mynabox.payload.topics import topic
from mynabox.summary.port import Found, Unavailable
from mynabox_testkit import patients
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from mynabox_testkit.refsvc import ReferenceService
from mynabox_testkit.tlsfiles import certificate_with_cn, make_test_pki
from support.linkemu import LinkEmulator
from support.wait import wait_for

pytestmark = pytest.mark.stack
RTT_S = 0.1
DEV = "amb-emulated"


def test_a_lookup_in_a_stall_ends_at_its_limit_and_the_kept_connection_serves_the_next(
    tmp_path: Path,
) -> None:
    pki = make_test_pki(tmp_path, clients=("device-1",))
    files = pki.client("device-1")
    cert = certificate_with_cn(patients.patient("warfarin-elderly").card_id)
    with (
        ReferenceService(
            cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert, today=date.today()
        ) as service,
        LinkEmulator(("127.0.0.1", service.port), rtt_s=RTT_S) as link,
    ):
        client = HttpsSummaryClient(
            f"https://127.0.0.1:{link.port}",
            ca_file=pki.ca_cert,
            client_cert=files.cert,
            client_key=files.key,
            timeout_s=5.0,
            retries=2,
            limit_s=2.0,
        )
        client.start()
        try:
            assert wait_for(lambda: service.stats["connections"] == 1, 10)
            assert isinstance(client.lookup(cert), Found)
            link.stall(4.0)
            started = time.monotonic()
            result = client.lookup(cert)
            took = time.monotonic() - started
            assert isinstance(result, Unavailable) and result.reason.startswith("timed out"), result
            assert took < 2.0 + 0.5
            time.sleep(4.0 - took + 0.5)  # the link is back
            assert isinstance(client.lookup(cert), Found)
        finally:
            client.close()


class Gateway:
    """A subscriber with the gateway's certificate straight on the broker; counts every payload."""

    def __init__(self, kit: DeliveryKit, port: int) -> None:
        files = kit.pki.client(kit.gateway)
        self.received: Counter[bytes] = Counter()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gw-emulated", protocol=paho.MQTTv5)
        self._client.tls_set_context(tls_context(kit.pki.ca_cert, files.cert, files.key))
        self._client.on_message = lambda _c, _u, msg: self.received.update([msg.payload])
        self.subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: self.subscribed.set()
        self._client.on_connect = lambda c, *_: c.subscribe(f"mynabox/{DEV}/summary", qos=1)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def test_the_mqtt_link_delivers_everything_queued_in_a_stall(tmp_path: Path) -> None:
    kit = DeliveryKit.create(tmp_path / "kit", devices=(DEV,))
    sealer = kit.sealer(DEV)
    sealed = [
        sealer.seal(Kind.SUMMARY, {"summary": {"n": i}}, now=datetime.now(UTC), clock_synced=True)
        for i in range(30)
    ]
    files = kit.pki.client(DEV)
    with (
        Mosquitto(kit.broker_tls, tmp_path / "broker") as broker,
        LinkEmulator(("127.0.0.1", broker.port), rtt_s=RTT_S) as link,
        Outbox(tmp_path / "outbox.db") as outbox,
    ):
        gateway = Gateway(kit, broker.port)
        assert gateway.subscribed.wait(10)
        settings = MqttConfig(
            "127.0.0.1", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=link.port, keepalive_s=5
        )
        mqtt = MqttLink(settings, DEV, outbox)
        mqtt.start()
        try:
            assert wait_for(lambda: mqtt.online, 20)

            def put(i: int) -> None:
                s = sealed[i]
                outbox.put(topic(DEV, "summary"), s.message_id, SealedBytes(s.token), now=datetime.now(UTC))
                mqtt.notify()

            for i in range(5):
                put(i)
            assert wait_for(lambda: outbox.depth() == 0, 10)
            link.stall(12.0)  # longer than two keepalives: paho gives the connection up behind the stall
            for i in range(5, 30):
                put(i)
                time.sleep(12.0 / 25)
            assert wait_for(lambda: outbox.depth() == 0, 60), f"{outbox.depth()} left in the outbox"
            assert wait_for(lambda: set(gateway.received) >= {s.token for s in sealed}, 10)
        finally:
            mqtt.stop()
            gateway.stop()
    duplicates = sum(n - 1 for n in gateway.received.values())
    # QoS 1: only a publish in flight when the stall began or while the link was held can come twice,
    # and the link never has more than its window in flight.
    assert duplicates <= settings.window, gateway.received
