"""The MQTT link against a real mosquitto with TLS, client certificates and a per-device ACL."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import LinkDownError, LinkSettings, LinkStateError, MqttLink, check_state, topic
from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.payload.envelope import Kind
from mynabox.receiver import Accepted, Duplicate, Receiver, ReceiverCore, ReceiverSettings, SeenStore, Verdict
from mynabox.testing.broker import DeliveryKit, Mosquitto
from mynabox.testing.tlsfiles import make_test_pki
from mynabox.testing.wait import wait_for

pytestmark = pytest.mark.stack

DEV = "ambulance-01"
OTHER = "ambulance-02"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> DeliveryKit:
    return DeliveryKit.create(tmp_path_factory.mktemp("kit"), devices=(DEV, OTHER))


@pytest.fixture
def broker(kit: DeliveryKit, tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(kit.broker_tls, tmp_path / "broker") as b:
        yield b


class Gateway:
    """The reference receiver in-process, recording every verdict."""

    def __init__(self, kit: DeliveryKit, broker: Mosquitto, state_dir: Path) -> None:
        self.accepted: list[str] = []
        self.duplicates = 0
        self.lock = threading.Lock()
        self.seen = SeenStore(state_dir / "seen.sqlite3")
        files = kit.pki.client(kit.gateway)
        core = ReceiverCore(kit.opener(), self.seen, lambda opened: None)
        self.core = core
        self.receiver = Receiver(
            ReceiverSettings("localhost", broker.port, kit.pki.ca_cert, files.cert, files.key),
            core,
            on_verdict=self._verdict,
        )

    def _verdict(self, verdict: Verdict) -> None:
        with self.lock:
            if isinstance(verdict, Accepted):
                self.accepted.append(verdict.opened.message_id)
            elif isinstance(verdict, Duplicate):
                self.duplicates += 1


@pytest.fixture
def gateway(kit: DeliveryKit, broker: Mosquitto, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(kit, broker, tmp_path)
    gw.receiver.start()
    try:
        assert gw.receiver.subscribed.wait(10), "receiver did not subscribe"
        yield gw
    finally:
        gw.receiver.stop()
        gw.seen.close()


def settings(kit: DeliveryKit, broker: Mosquitto, device: str = DEV, **kw) -> LinkSettings:
    files = kit.pki.client(device)
    return LinkSettings(
        "localhost", broker.port, device, kit.pki.ca_cert, files.cert, files.key, reconnect_max_s=2, **kw
    )


def queue(kit: DeliveryKit, outbox: Outbox, n: int, *, device: str = DEV, leaf: str = "summary") -> list[str]:
    sealer = kit.sealer(device)
    ids = []
    for i in range(n):
        now = datetime.now(UTC)
        sealed = sealer.seal(Kind.SUMMARY, {"n": i}, now=now, clock_synced=True)
        outbox.put(topic(device, leaf), sealed.message_id, SealedBytes(sealed.token), now=now)
        ids.append(sealed.message_id)
    return ids


class Watcher:
    """A plain subscriber (gateway identity) that records the last payload per topic."""

    def __init__(self, kit: DeliveryKit, broker: Mosquitto, pattern: str) -> None:
        self.last: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes]] = []
        files = kit.pki.client(kit.gateway)
        ctx = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
        ctx.load_cert_chain(str(files.cert), str(files.key))
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=paho.MQTTv5)
        self.client.tls_set_context(ctx)
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *_: c.subscribe(pattern, qos=1)
        self.client.connect("localhost", broker.port)
        self.client.loop_start()

    def _message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        self.last[message.topic] = bytes(message.payload)
        self.history.append((message.topic, bytes(message.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_publish_reaches_the_receiver_and_leaves_the_outbox(
    kit: DeliveryKit, broker: Mosquitto, gateway: Gateway, tmp_path: Path
) -> None:
    links: list[bool] = []
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        ids = queue(kit, outbox, 3)
        link = MqttLink(settings(kit, broker), outbox, on_link=links.append)
        link.start()
        try:
            assert wait_for(lambda: sorted(gateway.accepted) == sorted(ids))
            assert wait_for(lambda: outbox.depth() == 0)
            more = queue(kit, outbox, 2)
            link.notify()
            assert wait_for(lambda: len(gateway.accepted) == 5)
            assert gateway.accepted[3:] == more  # in outbox order
        finally:
            link.stop()
    assert links == [True, False]


def test_availability_and_state_are_retained(kit: DeliveryKit, broker: Mosquitto, tmp_path: Path) -> None:
    avail, state = topic(DEV, "availability"), topic(DEV, "state")
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        link = MqttLink(settings(kit, broker), outbox)
        link.publish_state(
            {"version": "0.1.0", "reader_present": True, "outbox_depth": 0, "clock_synced": False}
        )
        link.start()
        assert wait_for(lambda: link.online)
        late = Watcher(kit, broker, f"mynabox/{DEV}/#")  # subscribes after the fact: retained messages
        try:
            assert wait_for(lambda: late.last.get(avail) == b"online" and state in late.last)
            assert late.last[state] == (
                b'{"clock_synced":false,"outbox_depth":0,"reader_present":true,"version":"0.1.0"}'
            )
            link.stop()
            assert wait_for(lambda: late.last.get(avail) == b"offline")
        finally:
            late.close()


def test_state_refuses_unknown_keys_and_free_text() -> None:
    with pytest.raises(LinkStateError):
        check_state({"patient": "x"})
    with pytest.raises(LinkStateError):
        check_state({"state": "山田 太郎"})
    assert check_state({"outbox_depth": 3}) == b'{"outbox_depth":3}'


def test_200_queued_while_broker_down_arrive_exactly_once(
    kit: DeliveryKit, broker: Mosquitto, gateway: Gateway, tmp_path: Path
) -> None:
    links: list[bool] = []
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        link = MqttLink(settings(kit, broker), outbox, on_link=links.append)
        link.start()
        try:
            assert wait_for(lambda: link.online)
            first = queue(kit, outbox, 50)  # some of these are in flight when the broker goes
            link.notify()
            broker.stop()
            assert wait_for(lambda: not link.online)
            rest = queue(kit, outbox, 150)
            link.notify()
            time.sleep(0.5)
            assert outbox.depth() >= 150
            broker.start()
            assert wait_for(lambda: outbox.depth() == 0, timeout=60), "outbox did not drain"
            assert wait_for(lambda: len(set(gateway.accepted)) == 200, timeout=60)
            time.sleep(0.5)  # let any late duplicate arrive, to count it
        finally:
            link.stop()
    assert sorted(gateway.accepted) == sorted(first + rest)  # each accepted exactly once
    assert len(gateway.accepted) == 200
    print(f"duplicates dropped by message id: {gateway.duplicates}")
    assert links.count(False) >= 2  # the outage was reported to the daemon


def test_acl_refuses_another_devices_topic_and_the_record_stays(
    kit: DeliveryKit, broker: Mosquitto, gateway: Gateway, tmp_path: Path
) -> None:
    rejected: list[tuple[str, str]] = []
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        # OTHER's certificate, messages for DEV's topic (sealed by DEV's key: only the ACL can stop them).
        ids = queue(kit, outbox, 2, device=DEV)
        link = MqttLink(
            settings(kit, broker, device=OTHER), outbox, on_rejected=lambda m, r: rejected.append((m, r))
        )
        link.start()
        try:
            assert wait_for(lambda: len(rejected) == 2)
            assert {m for m, _ in rejected} == set(ids)
            assert all("authorized" in r.lower() for _, r in rejected)
            assert outbox.depth() == 2  # a refused PUBACK never deletes
            time.sleep(0.3)
            assert gateway.accepted == []
        finally:
            link.stop()


def _raw_connect(port: int, ctx: ssl.SSLContext) -> str:
    """TLS + a bare MQTT CONNECT; returns 'connack' or what went wrong."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
            data = tls.recv(4)
            return "connack" if data[:1] == b"\x20" else f"closed:{data!r}"
    except (ssl.SSLError, OSError) as err:
        return type(err).__name__


def test_clients_without_a_valid_certificate_are_refused(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path
) -> None:
    good = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
    files = kit.pki.client(DEV)
    good.load_cert_chain(str(files.cert), str(files.key))
    assert _raw_connect(broker.port, good) == "connack"  # the probe itself works

    no_cert = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
    assert _raw_connect(broker.port, no_cert) != "connack"

    rogue = make_test_pki(tmp_path / "rogue", clients=(DEV,))  # same CN, another CA
    wrong_ca = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
    wrong_ca.load_cert_chain(str(rogue.client(DEV).cert), str(rogue.client(DEV).key))
    assert _raw_connect(broker.port, wrong_ca) != "connack"

    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        rogue_settings = LinkSettings(
            "localhost", broker.port, DEV, kit.pki.ca_cert, rogue.client(DEV).cert, rogue.client(DEV).key
        )
        link = MqttLink(rogue_settings, outbox)
        link.start()
        try:
            assert wait_for(lambda: link.last_error is not None)
            assert isinstance(link.last_error, LinkDownError)
            assert not link.online
        finally:
            link.stop()


_LINK_CHILD = r"""
import sys, time
from pathlib import Path
from mynabox.adapters.mqtt import LinkSettings, MqttLink
from mynabox.adapters.outbox import Outbox
port, device, ca, cert, key, db = sys.argv[1:]
settings = LinkSettings("localhost", int(port), device, Path(ca), Path(cert), Path(key))
link = MqttLink(settings, Outbox(Path(db)))
link.start()
time.sleep(60)
"""


def test_last_will_offline_when_the_link_process_is_killed(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path
) -> None:
    avail = topic(DEV, "availability")
    watcher = Watcher(kit, broker, avail)
    files = kit.pki.client(DEV)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LINK_CHILD,
            str(broker.port),
            DEV,
            str(kit.pki.ca_cert),
            str(files.cert),
            str(files.key),
            str(tmp_path / "outbox.sqlite3"),
        ]
    )
    try:
        assert wait_for(lambda: watcher.last.get(avail) == b"online")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert wait_for(lambda: watcher.last.get(avail) == b"offline")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        watcher.close()
