"""The receiver's MQTT side on a real mosquitto (TLS): what it says when its process has too many files open.

paho waits with select(), so a broker socket numbered past FD_SETSIZE is never read: the receiver retried
for ever in silence (two CI runs lost the end of the power-cut test that way, in a pytest process that had
leaked past 1,024 descriptors). It must at least say why.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.gateway.subscriber import FD_SETSIZE, Receiver, ReceiverSettings
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from support.wait import wait_for

pytestmark = pytest.mark.stack


@contextlib.contextmanager
def descriptors_taken_below(limit: int) -> Iterator[None]:
    """Every free descriptor below `limit` taken (by /dev/null): the next socket gets one past it."""
    taken: list[int] = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            taken.append(fd)
            if fd >= limit - 1:
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)


def _receiver(kit: DeliveryKit, broker: Mosquitto, tmp_path: Path, client_id: str) -> Receiver:
    files = kit.pki.client(kit.gateway)
    settings = ReceiverSettings(
        "127.0.0.1", broker.port, kit.pki.ca_cert, files.cert, files.key, client_id=client_id
    )
    core = ReceiverCore(kit.opener(), SeenStore(tmp_path / f"{client_id}.db"), lambda _o: None)
    return Receiver(settings, core)


def test_a_socket_past_fd_setsize_is_reported_not_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kit = DeliveryKit.create(tmp_path / "kit")
    with Mosquitto(kit.broker_tls, tmp_path / "broker") as broker:
        caplog.set_level(logging.ERROR, logger="mynabox.gateway.receiver")
        starved = _receiver(kit, broker, tmp_path, "gw-starved")
        with descriptors_taken_below(FD_SETSIZE):
            starved.start()
            try:
                assert wait_for(lambda: "descriptor" in caplog.text, 20), "the receiver said nothing"
                assert not starved.subscribed.wait(3)  # what the log explains
            finally:
                starved.stop()
        assert f"at or past {FD_SETSIZE}" in caplog.text
        caplog.clear()
        normal = _receiver(kit, broker, tmp_path, "gw-normal")  # the same broker, descriptors freed
        normal.start()
        try:
            assert normal.subscribed.wait(20)
            assert normal.connected
        finally:
            normal.stop()
        assert "descriptor" not in caplog.text
