"""sd_notify against a real AF_UNIX datagram socket the test owns (filesystem path and abstract namespace)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters.systemd import Notifier


class Listener:
    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
        self.sock.settimeout(5)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    address = str(tmp_path / "notify") if request.param == "path" else f"@mynabox-test-{uuid.uuid4().hex}"
    server = Listener(address)
    try:
        yield server
    finally:
        server.sock.close()


def test_messages_arrive(listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address})
    assert notifier.enabled
    assert notifier.ready("reader, display, outbox and broker link up")
    assert listener.receive() == ["READY=1", "STATUS=reader, display, outbox and broker link up"]
    assert notifier.status("broker offline\nqueueing")
    assert listener.receive() == ["STATUS=broker offline queueing"]
    assert notifier.watchdog()
    assert listener.receive() == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert listener.receive() == ["STOPPING=1"]
    assert notifier.last_error is None
    notifier.close()


def test_no_socket_means_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() and notifier.watchdog() and notifier.status("x")
    assert notifier.watchdog_interval() is None


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert Notifier.from_environ({"WATCHDOG_USEC": "10000000"}).watchdog_interval() == 5.0
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(mine).watchdog_interval() == 2.0
    # The watchdog belongs to another process (e.g. we were forked from the main one): not ours to ping.
    other = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(other).watchdog_interval() is None
    for bad in ("", "soon", "0", "-5"):
        assert Notifier.from_environ({"WATCHDOG_USEC": bad}).watchdog_interval() is None


def test_failed_send_is_logged_once_and_surfaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    address = str(tmp_path / "gone")
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    with caplog.at_level(logging.WARNING, logger="mynabox.adapters.systemd"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    assert isinstance(notifier.last_error, OSError)
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1
    # systemd comes (back): the next send goes through and clears the error.
    server = Listener(address)
    try:
        assert notifier.watchdog()
        assert server.receive() == ["WATCHDOG=1"]
        assert notifier.last_error is None
    finally:
        server.sock.close()
        notifier.close()
