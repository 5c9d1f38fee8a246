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
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import LinkDownError, LinkStateError, MqttLink, check_state
from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.config.model import Credential, MqttConfig
from mynabox.gateway.core import Accepted, Duplicate, ReceiverCore, Verdict
from mynabox.gateway.store import SeenStore
from mynabox.gateway.subscriber import Receiver, ReceiverSettings
from mynabox.payload.envelope import Kind
from mynabox.payload.topics import topic
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from mynabox_testkit.tlsfiles import make_test_pki
from support.wait import wait_for

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


def make_link(kit: DeliveryKit, broker: Mosquitto, outbox: Outbox, device: str = DEV, **kw: Any) -> MqttLink:
    """A link to the test broker as the daemon makes one: from an [mqtt] section (the key a credential)."""
    files = kit.pki.client(device)
    mqtt = MqttConfig("localhost", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=broker.port)
    return MqttLink(mqtt, device, outbox, reconnect_max_s=2, **kw)


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
        link = make_link(kit, broker, outbox, on_link=links.append)
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
        link = make_link(kit, broker, outbox)
        link.publish_state(
            {"version": "0.1.0", "reader_present": True, "outbox_depth": 0, "clock_synced": False}
        )
        link.start()
        assert wait_for(lambda: link.online)
        late = Watcher(kit, broker, f"mynabox/{DEV}/#")  # subscribes after the fact: retained messages
        try:
            assert wait_for(lambda: late.last.get(avail) == b"online" and state in late.last)
            assert late.last[state] == (
                b'{"clock_synced":false,"no_subscriber":0,"outbox_depth":0,"reader_present":true,'
                b'"version":"0.1.0"}'
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
        link = make_link(kit, broker, outbox, on_link=links.append)
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
        link = make_link(kit, broker, outbox, device=OTHER, on_rejected=lambda m, r: rejected.append((m, r)))
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
        rogue_key = Credential.at(rogue.client(DEV).key)
        rogue_mqtt = MqttConfig(
            "localhost", kit.pki.ca_cert, rogue.client(DEV).cert, rogue_key, port=broker.port
        )
        link = MqttLink(rogue_mqtt, DEV, outbox)
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
from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.outbox import Outbox
from mynabox.config.model import Credential, MqttConfig
port, device, ca, cert, key, db = sys.argv[1:]
mqtt = MqttConfig("localhost", Path(ca), Path(cert), Credential.at(Path(key)), port=int(port))
link = MqttLink(mqtt, device, Outbox(Path(db)))
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


# --- identity, PUBACK 0x10, retain, sizes and queues (issue 10 items 1 and 3) -------------------------


class Raw:
    """A bare paho client with some certificate and any client id: what an attacker holding one box's
    certificate can do. Records connects, disconnects and each PUBACK's reason code by mid."""

    def __init__(
        self, kit: DeliveryKit, broker: Mosquitto, cert_of: str, client_id: str, *, clean_start: bool = True
    ) -> None:
        self.connected = threading.Event()
        self.disconnects: list[str] = []
        self.pubacks: dict[int, int] = {}
        files = kit.pki.client(cert_of)
        ctx = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
        ctx.load_cert_chain(str(files.cert), str(files.key))
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.tls_set_context(ctx)
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_disconnect = lambda _c, _u, _f, code, _p: self.disconnects.append(str(code))
        self.client.on_publish = lambda _c, _u, mid, code, _p: self.pubacks.__setitem__(mid, code.value)
        self.client.connect("localhost", broker.port, clean_start=clean_start)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def publish(self, topic_name: str, payload: bytes, *, retain: bool = False) -> int:
        info = self.client.publish(topic_name, payload, qos=1, retain=retain)
        return info.mid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_certificate_cannot_wipe_the_gateways_session(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path
) -> None:
    gw = Gateway(kit, broker, tmp_path)
    gw.receiver.start()
    assert gw.receiver.subscribed.wait(10)
    gw.receiver.stop()  # offline: its persistent session keeps what arrives
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        ids = queue(kit, outbox, 3)
        link = make_link(kit, broker, outbox)
        link.start()
        try:
            assert wait_for(lambda: outbox.depth() == 0), "the broker did not take the messages"
        finally:
            link.stop()
    # A box's certificate asks for the gateway's client id (as configured, and as the broker names it)
    # with a clean start: in a broker that lets it, the gateway's session and its 3 summaries are gone.
    for client_id in ("mynabox-gateway", kit.gateway):
        Raw(kit, broker, OTHER, client_id).close()
    (tmp_path / "again").mkdir()
    gw2 = Gateway(kit, broker, tmp_path / "again")
    gw2.receiver.start()
    try:
        assert wait_for(lambda: sorted(gw2.accepted) == sorted(ids), timeout=10), gw2.accepted
    finally:
        gw2.receiver.stop()
        gw.seen.close()
        gw2.seen.close()


def test_a_device_certificate_cannot_knock_another_box_off(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path
) -> None:
    links: list[bool] = []
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        link = make_link(kit, broker, outbox, on_link=links.append)
        link.start()
        try:
            assert wait_for(lambda: link.online)
            squatters = [Raw(kit, broker, OTHER, cid) for cid in (f"mynabox-{DEV}", DEV)]
            time.sleep(1.5)  # a takeover shows at once; give the link time to notice
            assert links == [True], "the box was disconnected by another certificate"
            for raw in squatters:
                raw.close()
        finally:
            link.stop()


def test_puback_no_subscribers_keeps_the_record_until_a_subscriber_comes(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_topic = topic(DEV, "state")
    watcher = Watcher(kit, broker, state_topic)  # not a summary subscriber: fleet ops reading state
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        ids = queue(kit, outbox, 3)
        link = make_link(kit, broker, outbox)
        link.publish_state({"outbox_depth": 3})
        link.start()
        try:
            # Nobody subscribes to the summary topic: each PUBACK is 0x10, and nothing may be deleted.
            assert wait_for(lambda: link.no_subscriber >= 3), link.no_subscriber
            assert outbox.depth() == 3
            assert wait_for(lambda: b'"no_subscriber":' in watcher.last.get(state_topic, b""))
            assert b'"no_subscriber":0' not in watcher.last[state_topic]
            assert f"no subscriber at the broker for message {ids[0]}" in caplog.text
            time.sleep(2.5)
            assert link.no_subscriber <= 12  # paced by the back-off (1 s, then 2 s), not resent at once
            watcher.close()  # the gateway's certificate: one connection at a time (same client id)
            gw = Gateway(kit, broker, tmp_path)
            gw.receiver.start()
            try:
                assert wait_for(lambda: sorted(gw.accepted) == sorted(ids), timeout=15), gw.accepted
                assert wait_for(lambda: outbox.depth() == 0)
            finally:
                gw.receiver.stop()
                gw.seen.close()
        finally:
            link.stop()
    assert len(gw.accepted) == 3  # each once


def test_a_stop_while_a_message_is_in_the_sink_still_acknowledges_it(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path
) -> None:
    in_sink, release = threading.Event(), threading.Event()

    def slow_sink(_opened: object) -> None:
        in_sink.set()
        release.wait(10)  # SIGTERM arrives while the sink is writing the summary out

    gw = Gateway(kit, broker, tmp_path)
    slow = ReceiverCore(kit.opener(), gw.seen, slow_sink)
    files = kit.pki.client(kit.gateway)
    first = Receiver(ReceiverSettings("localhost", broker.port, kit.pki.ca_cert, files.cert, files.key), slow)
    first.start()
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        link = make_link(kit, broker, outbox)
        try:
            assert first.subscribed.wait(10)
            ids = queue(kit, outbox, 1)
            link.start()
            assert in_sink.wait(10)
            stopper = threading.Thread(target=first.stop)
            stopper.start()
            time.sleep(0.3)  # stop() is under way; the sink then finishes and the message is acknowledged
            release.set()
            stopper.join(10)
            # Same client id, persistent session: an unacknowledged message would come again, as a duplicate.
            gw.receiver.start()
            assert gw.receiver.subscribed.wait(10)
            time.sleep(2)
            assert (gw.accepted, gw.duplicates) == ([], 0), "the message came again after a clean stop"
            assert ids[0] in gw.seen
        finally:
            release.set()
            link.stop()
            gw.receiver.stop()
            gw.seen.close()


def test_a_retained_summary_from_a_device_is_refused_and_not_retained(
    kit: DeliveryKit, broker: Mosquitto
) -> None:
    raw = Raw(kit, broker, DEV, "whatever")
    try:
        refused = raw.publish(topic(DEV, "summary"), b"sealed bytes", retain=True)
        allowed = raw.publish(topic(DEV, "state"), b'{"outbox_depth":0}', retain=True)
        assert wait_for(lambda: refused in raw.pubacks and allowed in raw.pubacks)
        assert raw.pubacks[refused] == 0x87  # not authorized
        assert raw.pubacks[allowed] < 0x80
    finally:
        raw.close()
    late = Watcher(kit, broker, f"mynabox/{DEV}/#")  # retained messages arrive at once on subscribe
    try:
        assert wait_for(lambda: topic(DEV, "state") in late.last)
        time.sleep(0.3)
        assert topic(DEV, "summary") not in late.last
    finally:
        late.close()


def test_a_publish_past_the_message_limit_is_refused(kit: DeliveryKit, broker: Mosquitto) -> None:
    from mynabox.payload.envelope import MAX_MESSAGE_BYTES

    watcher = Watcher(kit, broker, topic(DEV, "summary"))
    raw = Raw(kit, broker, DEV, "whatever")
    try:
        assert wait_for(lambda: "gateway 1 mynabox/ambulance-01/summary" in broker.log()), "no subscription"
        at_limit = raw.publish(topic(DEV, "summary"), b"a" * MAX_MESSAGE_BYTES)
        assert wait_for(lambda: at_limit in raw.pubacks)
        assert raw.pubacks[at_limit] < 0x80
        # mosquitto answers PUBACK 0x95, a code MQTT 5 does not allow there: paho drops the connection.
        raw.publish(topic(DEV, "summary"), b"b" * (MAX_MESSAGE_BYTES + 1))
        assert wait_for(lambda: raw.disconnects != [])
        time.sleep(0.3)
        assert [len(p) for _, p in watcher.history] == [MAX_MESSAGE_BYTES]
    finally:
        raw.close()
        watcher.close()


def _vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_50_mb_packet_is_cut_off_before_the_broker_reads_it_in(kit: DeliveryKit, broker: Mosquitto) -> None:
    assert broker.pid is not None
    before = _vm_rss_kb(broker.pid)
    ctx = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
    files = kit.pki.client(DEV)
    ctx.load_cert_chain(str(files.cert), str(files.key))
    size, name = 50_000_000, topic(DEV, "summary").encode()
    length, varint = len(name) + 2 + size, bytearray()
    while True:
        byte, length = length % 128, length // 128
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    sent = 0
    with (
        socket.create_connection(("127.0.0.1", broker.port), timeout=5) as plain,
        ctx.wrap_socket(plain, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        assert tls.recv(4)[:1] == b"\x20"
        tls.sendall(b"\x30" + bytes(varint) + len(name).to_bytes(2, "big") + name)
        chunk = b"x" * 65536
        try:
            while sent < size:
                tls.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
    grown = _vm_rss_kb(broker.pid) - before
    print(f"50 MB packet: cut off after {sent / 1e6:.1f} MB sent; broker RSS grew {grown} kB")
    assert sent < 16_000_000, f"the broker read {sent} bytes of an oversize packet"
    assert broker.running
    assert grown < 8_000  # kB


def test_the_queue_of_an_offline_subscriber_is_bounded(
    kit: DeliveryKit, broker: Mosquitto, tmp_path: Path
) -> None:
    from mynabox_testkit.broker import MAX_QUEUED_BYTES

    gw = Gateway(kit, broker, tmp_path)
    gw.receiver.start()
    assert gw.receiver.subscribed.wait(10)
    gw.receiver.stop()
    size, count = 250_000, 300  # 75 MB for a receiver that is away: more than the 64 MiB bound
    raw = Raw(kit, broker, DEV, "whatever")
    try:
        mids = [raw.publish(topic(DEV, "summary"), bytes([i % 256]) * size) for i in range(count)]
        assert wait_for(lambda: all(m in raw.pubacks for m in mids), timeout=60)
    finally:
        raw.close()
    assert "Outgoing messages are being dropped for client gateway" in broker.log()
    time.sleep(2.5)  # autosave_interval 1: the queue is in the persistence file now
    # the saved file only: an autosave under way also holds mosquitto.db.new beside it for a moment
    data = broker.workdir / "data"
    assert wait_for(lambda: not list(data.glob("*.new")), 10)
    stored = (data / "mosquitto.db").stat().st_size
    assert broker.pid is not None
    rss = _vm_rss_kb(broker.pid)
    (tmp_path / "again").mkdir()
    gw2 = Gateway(kit, broker, tmp_path / "again")
    gw2.receiver.start()
    try:
        assert wait_for(lambda: gw2.core.counts["rejected"] > 0)  # raw bytes: refused, but counted
        last = -1
        while gw2.core.counts["rejected"] != last:  # until nothing more arrives
            last = gw2.core.counts["rejected"]
            time.sleep(1.0)
    finally:
        gw2.receiver.stop()
        gw.seen.close()
        gw2.seen.close()
    received = gw2.core.counts["rejected"]
    assert 200 < received < count
    assert received * size <= MAX_QUEUED_BYTES + 20 * size  # the queue plus mosquitto's in-flight window
    print(
        f"{count} x {size} B for an absent receiver: {received} kept, persistence {stored / 2**20:.1f} MiB,"
        f" broker RSS {rss / 1024:.0f} MiB"
    )
    assert stored < MAX_QUEUED_BYTES + 8 * 1024 * 1024


def test_a_record_over_the_limit_is_not_sent_and_the_rest_still_go(
    kit: DeliveryKit, broker: Mosquitto, gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mynabox.payload.envelope import MAX_MESSAGE_BYTES

    links: list[bool] = []
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        # Sealed before the limit was enforced: sent, the broker would cut the connection on every try.
        outbox.put(
            topic(DEV, "summary"),
            "f" * 32,
            SealedBytes(b"x" * (MAX_MESSAGE_BYTES + 1)),
            now=datetime.now(UTC),
        )
        ids = queue(kit, outbox, 2)
        link = make_link(kit, broker, outbox, on_link=links.append)
        link.start()
        try:
            assert wait_for(lambda: sorted(gateway.accepted) == sorted(ids))
            time.sleep(0.5)
            assert links == [True]  # never cut off
            assert outbox.depth() == 1  # kept for the retention purge, which audits it
            assert "is over the size limit: not sent" in caplog.text
        finally:
            link.stop()
