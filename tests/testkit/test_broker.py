"""The shipped gateway broker example (docs/gateway) and the test harness agree, and the example runs."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from mynabox.payload.envelope import MAX_MESSAGE_BYTES
from mynabox_testkit.broker import DeliveryKit, acl_text, hardening_lines, retain_plugin
from mynabox_testkit.ports import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "gateway"


def _settings(text: str) -> list[tuple[str, str]]:
    lines = (line.strip() for line in text.splitlines())
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_the_example_has_every_hardening_setting_of_the_harness() -> None:
    example = dict(_settings((EXAMPLE / "mosquitto.conf").read_text()))
    for key, value in _settings("\n".join(hardening_lines("/x/mynabox_retain.so"))):
        if key == "plugin":
            assert example[key].endswith("/mynabox_retain.so")
        else:
            assert example.get(key) == value.split("#")[0].strip(), key
    assert int(example["message_size_limit"]) == MAX_MESSAGE_BYTES
    assert example["persistence"] == "true"


def test_the_example_acl_is_the_harness_acl() -> None:
    assert _settings((EXAMPLE / "acl").read_text()) == _settings(acl_text("gateway"))


@pytest.mark.stack
def test_the_example_config_runs_on_mosquitto(tmp_path: Path) -> None:
    kit = DeliveryKit.create(tmp_path / "kit", devices=("ambulance-01",))
    port = free_port()
    (tmp_path / "acl").write_text((EXAMPLE / "acl").read_text())
    swaps = {
        "listener": f"{port} 127.0.0.1",
        "cafile": str(kit.pki.ca_cert),
        "certfile": str(kit.pki.server_cert),
        "keyfile": str(kit.pki.server_key),
        "acl_file": str(tmp_path / "acl"),
        "plugin": str(retain_plugin()),
        "persistence_location": f"{tmp_path}/",
        "log_dest": f"file {tmp_path / 'log'}",
    }
    text = (EXAMPLE / "mosquitto.conf").read_text()
    for key, value in swaps.items():
        text, n = re.subn(rf"^{key} .*$", f"{key} {value}", text, flags=re.M)
        assert n == 1, key
    import getpass

    (tmp_path / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n{text}")
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stderr=subprocess.PIPE)
    try:
        ctx = ssl.create_default_context(cafile=str(kit.pki.ca_cert))
        files = kit.pki.client("ambulance-01")
        ctx.load_cert_chain(str(files.cert), str(files.key))
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls,
                ):
                    tls.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
                    assert tls.recv(4)[:4] == b"\x20\x02\x00\x00"  # CONNACK, accepted
                    break
            except OSError:
                assert time.monotonic() < deadline, "the example broker did not accept"
                time.sleep(0.1)
        log = (tmp_path / "log").read_text()
        assert "as ambulance-01 " in log  # the client id is the CN (a missing plugin stops the start)
    finally:
        proc.terminate()
        proc.wait(10)
