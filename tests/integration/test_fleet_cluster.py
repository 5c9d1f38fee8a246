"""The fleet's path past the ambulance: boxes → the onboard gateway's mosquitto → the shipped bridge → a
3-node NATS cluster (JetStream, MQTT) → the central consumer, which opens and dedupes by the signed jti.

Real processes throughout (mosquitto, three nats-server, the boxes' real sealing, outbox and link). The
outages are real too: the gateway's broker stopped while boxes keep reading, the whole cluster stopped while
the gateway keeps taking messages, a cluster node killed mid-stream. ``MYNABOX_FLEET_OUTAGE_S`` sets how long
each outage lasts (CI: 5 s; fleet ops: minutes, e.g. 300).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mynabox.config.model import Credential, MqttConfig
from mynabox.gateway.core import Accepted, ReceiverCore, Rejected
from mynabox.gateway.store import SeenStore
from mynabox.payload.seal import Opened
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from support.cluster import CentralConsumer, NatsCluster, SimVehicle, bridge_config
from support.wait import wait_for

pytestmark = pytest.mark.stack

DEVICES = tuple(f"amb-{i:02d}" for i in range(1, 6))
OUTAGE_S = float(os.environ.get("MYNABOX_FLEET_OUTAGE_S", "5"))
BODY = {"summary": {"synthetic": True}, "read": {"consent": "oral-consent"}}


@dataclass
class Fleet:
    kit: DeliveryKit
    cluster: NatsCluster
    gateway: Mosquitto
    consumer: CentralConsumer
    vehicles: list[SimVehicle]
    opened: list[Opened]

    def accepted_ids(self) -> set[str]:
        return {o.message_id for o in self.opened}

    def drained(self) -> bool:
        return all(v.outbox.depth() == 0 for v in self.vehicles)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    kit = DeliveryKit.create(tmp_path / "kit", devices=DEVICES, gateway="gateway")
    bridge_files, central_files = kit.pki.add_client("gw-amb"), kit.pki.add_client("central")
    with NatsCluster(kit.broker_tls, central_files, tmp_path / "nats") as cluster:
        extra = bridge_config(cluster, "gw-amb", kit.pki.ca_cert, bridge_files)
        with Mosquitto(kit.broker_tls, tmp_path / "gateway", extra_config=extra) as gateway:
            opened: list[Opened] = []
            core = ReceiverCore(kit.opener(), SeenStore(tmp_path / "central-seen.db"), opened.append)
            consumer = CentralConsumer(core, cluster.mqtt_ports[-1], kit.pki.ca_cert, central_files)
            consumer.start()
            assert consumer.subscribed.wait(20)
            vehicles = []
            for device in DEVICES:
                files = kit.pki.client(device)
                mqtt = MqttConfig(
                    "127.0.0.1", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=gateway.port
                )
                vehicle = SimVehicle(device, kit.sealer(device), tmp_path / f"{device}.sqlite3", mqtt)
                vehicle.start()
                vehicles.append(vehicle)
            try:
                yield Fleet(kit, cluster, gateway, consumer, vehicles, opened)
            finally:
                for vehicle in vehicles:
                    vehicle.stop()
                consumer.stop()


def _reads(fleet: Fleet, rounds: int) -> set[str]:
    return {v.read(BODY) for _ in range(rounds) for v in fleet.vehicles}


def _outage_reads(fleet: Fleet) -> set[str]:
    """Boxes keep reading through the outage: a read per box every second or so."""
    produced: set[str] = set()
    end = time.monotonic() + OUTAGE_S
    while time.monotonic() < end:
        produced |= _reads(fleet, 1)
        time.sleep(1.0)
    return produced


def _everything_arrived(fleet: Fleet, produced: set[str], timeout: float = 60) -> None:
    assert wait_for(lambda: produced <= fleet.accepted_ids(), timeout, 0.1), (
        f"{len(produced - fleet.accepted_ids())} of {len(produced)} never reached the central consumer;\n"
        + fleet.gateway.log()[-3000:]
    )
    assert len(fleet.opened) == len(fleet.accepted_ids()), "a duplicate got past the signed-jti dedupe"
    assert fleet.consumer.count(Rejected) == 0


def test_gateway_broker_offline_then_back(fleet: Fleet) -> None:
    produced = _reads(fleet, 2)
    _everything_arrived(fleet, produced)
    fleet.gateway.stop()
    produced |= _outage_reads(fleet)
    assert not fleet.drained()  # the boxes held them: nothing to send to
    fleet.gateway.start()
    _everything_arrived(fleet, produced)
    assert wait_for(fleet.drained, 20)


def test_central_cluster_offline_then_back(fleet: Fleet) -> None:
    produced = _reads(fleet, 2)
    _everything_arrived(fleet, produced)
    fleet.cluster.stop()
    produced |= _outage_reads(fleet)
    assert wait_for(fleet.drained, 20)  # the gateway took them (PUBACK) and keeps them for the bridge
    assert not produced <= fleet.accepted_ids()
    fleet.cluster.start()
    _everything_arrived(fleet, produced, timeout=90)


def test_a_cluster_node_killed_mid_stream_loses_nothing_acknowledged(fleet: Fleet) -> None:
    produced: set[str] = set()
    for i in range(40):
        produced |= _reads(fleet, 1)
        if i == 15:  # the bridge is on the first node of its address list: kill it under load
            assert wait_for(lambda: len(fleet.accepted_ids()) > 20, 20)
            fleet.cluster.kill(0)
        time.sleep(0.1)
    assert wait_for(fleet.drained, 30)  # every message was acknowledged to its box
    _everything_arrived(fleet, produced, timeout=90)
    assert all(isinstance(v, Accepted) or type(v).__name__ == "Duplicate" for v in fleet.consumer.verdicts)
