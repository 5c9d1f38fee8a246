"""The fleet harness's worker processes: their vehicles come online and deliver, and a vehicle paho cannot run
(its socket past select()'s FD_SETSIZE) is reported offline with the reason, not left to look merely slow."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.payload.seal import Opened
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from support.cluster import FD_SETSIZE, CentralConsumer, VehicleProcess, ask_all
from support.wait import wait_for

pytestmark = pytest.mark.stack

DEVICES = ("amb-01", "amb-02")
BODY = {"summary": {"synthetic": True}, "read": {"consent": "oral-consent"}}


def test_a_worker_process_brings_its_vehicles_online_and_delivers(tmp_path: Path) -> None:
    kit = DeliveryKit.create(tmp_path / "kit", devices=DEVICES)
    opened: list[Opened] = []
    core = ReceiverCore(kit.opener(), SeenStore(tmp_path / "seen.db"), opened.append)
    with Mosquitto(kit.broker_tls, tmp_path / "gateway") as gateway:
        # the gateway's reader, subscribed first (MQTT 5: with nobody subscribed the box keeps its message)
        consumer = CentralConsumer(
            core, gateway.port, kit.pki.ca_cert, kit.pki.client(kit.gateway), client_id=kit.gateway
        )
        consumer.start()
        worker = VehicleProcess(kit, [(d, gateway.port) for d in DEVICES], tmp_path)
        try:
            assert consumer.subscribed.wait(60)
            worker.start()
            report = worker.wait_online(90)
            assert report.offline == {} and report.vehicles == 2
            assert report.highest_fd < FD_SETSIZE
            worker.post("reads", time.monotonic(), [(0.0, d) for d in DEVICES], BODY)
            queued = worker.answer(90)
            assert len(queued) == 2
            assert wait_for(lambda: {o.message_id for o in opened} == set(queued), 90, 0.1)
            # an empty outbox: the gateway's broker acknowledged both (QoS 1)
            assert wait_for(lambda: ask_all([worker], 30, "depth") == [0], 90, 0.2)
        finally:
            worker.stop()
            consumer.stop()


def test_vehicles_whose_sockets_pass_fd_setsize_are_reported_offline_with_the_reason(tmp_path: Path) -> None:
    kit = DeliveryKit.create(tmp_path / "kit", devices=DEVICES[:1])
    with Mosquitto(kit.broker_tls, tmp_path / "gateway") as gateway:
        # the worker holds FD_SETSIZE descriptors first, as 168 other vehicles in one process would
        worker = VehicleProcess(kit, [(DEVICES[0], gateway.port)], tmp_path, reserve_fds=FD_SETSIZE)
        try:
            worker.start()
            # never online however long it waits (paho retries forever): a short wait shows it
            report = worker.wait_online(5)
        finally:
            worker.stop()
    assert report.highest_fd >= FD_SETSIZE
    assert list(report.offline) == [DEVICES[0]]
    assert "FD_SETSIZE" in report.offline[DEVICES[0]]
