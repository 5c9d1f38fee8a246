"""The composition root on the real stack (pcscd + vpcd, mosquitto with TLS, the reference service, SQLite):
the adapters made from the config's sections (the config imports none);
`run_box` builds the parts, runs the loop until its Event is set and stops what started in reverse, also
when a part cannot start; a box without a panel runs on the null panel."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.outbox import Outbox
from mynabox.adapters.panel import NullPanel, PinMapError
from mynabox.adapters.systemd import Notifier
from mynabox.config import load_config
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.wiring import run_box, summary_client
from mynabox_testkit.inprocess import BoxThread
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.boxfiles import VALID, credentials_env, make_box, write_config
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = pytest.mark.stack


def lines(notify: NotifySocket) -> list[str]:
    return [text for _, text in notify.messages]


def test_a_box_without_a_panel_reads_a_card_to_its_result() -> None:
    with BoxStack(device_id="amb-nopanel", consent_default="oral", panel=False) as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        opened: list[Opened] = []
        receiver = stack.gateway_receiver(opened.append)
        receiver.start()
        assert receiver.subscribed.wait(10)
        box = BoxThread(load_config(stack.config_path))
        box.start()
        try:
            assert box.wait_ready(10)
            assert isinstance(box.parts.panel, NullPanel)
            card = VirtualMyNumberCard(patient("warfarin-elderly").card_id)
            server = VpcdCardServer(card, port=stack.pcscd.vpcd_port).start()
            try:  # the LED and buzzer effects on the way went nowhere, and nothing asked for a panel
                assert wait_for(lambda: box.parts.controller.state.value == "result", 15)
            finally:
                server.remove()
            assert wait_for(lambda: any(o.kind is Kind.SUMMARY for o in opened), 15)
            assert wait_for(lambda: box.parts.outbox.depth() == 0, 15)
        finally:
            box.stop()
            receiver.stop()
        assert box.code == 0 and not box.running


def test_a_part_that_cannot_start_stops_the_ones_before_it(tmp_path: Path, notify: NotifySocket) -> None:
    bad_pins = tmp_path / "pins.toml"
    bad_pins.write_text("[buttons]\nconsent = 999\n", encoding="utf-8")  # a config error: it stops the box
    extra: dict[str, dict[str, object]] = {"panel": {"pins_file": str(bad_pins)}}
    with BoxStack(device_id="amb-badpins", with_pcscd=False, config_extra=extra) as stack:
        config = load_config(stack.config_path)
        with pytest.raises(PinMapError, match="consent: expected a line name"):
            run_box(config, threading.Event(), notifier=Notifier(str(notify.path)))
    assert wait_for(lambda: "STOPPING=1" in lines(notify), 5)
    assert lines(notify) == [
        "STATUS=started outbox",
        "STATUS=started display",
        "STOPPING=1",
        "STATUS=stopping",
    ]


def test_shutdown_set_before_the_start_still_gets_ready_then_stops_cleanly(notify: NotifySocket) -> None:
    with BoxStack(device_id="amb-quickstop") as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        shutdown = threading.Event()
        shutdown.set()  # SIGTERM while the parts were starting
        seen: list[object] = []
        code = run_box(
            load_config(stack.config_path),
            shutdown,
            notifier=Notifier(str(notify.path)),
            on_ready=seen.append,
        )
        assert code == 0 and len(seen) == 1
    assert wait_for(lambda: "STATUS=stopping" in lines(notify), 5)
    got = lines(notify)
    started = [text for text in got if text.startswith("STATUS=started ")]
    assert started == [
        f"STATUS=started {name}"
        for name in ("outbox", "display", "panel", "link", "reader", "delivery", "summary link")
    ]
    assert got.index("READY=1") < got.index("STOPPING=1")


def test_sections_map_onto_the_adapters(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    config = load_config(write_config(box, VALID), environ=credentials_env(box))
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, config.device.id) == ("127.0.0.1", 8883, "amb-7")
    assert mqtt.client_key.path == box / "creds" / "mqtt-client-key"
    # Both build their TLS contexts at once, from the files the config check accepted.
    with Outbox(tmp_path / "outbox.db") as outbox:
        MqttLink(mqtt, config.device.id, outbox)
    client = summary_client(config.summary)
    client.close()


def _connections_to(port: int) -> int:
    """ESTABLISHED TCP connections of this process whose far end is 127.0.0.1:`port`."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        count += remote == f"0100007F:{port:04X}" and state == "01" and inode in inodes
    return count


def _corrupt(path: Path) -> None:
    path.unlink()  # a key file copied in by hand over the credential: unreadable as a key
    path.write_bytes(b"not a key")
    path.chmod(0o600)


# Where `build` can fail for real once the config was read: every key and file it opens.
BREAKS = {
    "audit-key": lambda stack, _tmp: _corrupt(stack.credentials_dir / "audit-key"),
    "outbox": lambda stack, _tmp: (stack.state_dir / "outbox.db").mkdir(),
    "pin-map": lambda _stack, tmp: (tmp / "pins.toml").write_text("[buttons]\nconsent = 999\n"),
    "mqtt-key": lambda stack, _tmp: _corrupt(stack.credentials_dir / "mqtt-client-key"),
    "summary-key": lambda stack, _tmp: _corrupt(stack.credentials_dir / "summary-client-key"),
    "device-key": lambda stack, _tmp: _corrupt(stack.credentials_dir / "device-key"),
    "gateway-key": lambda stack, _tmp: (stack.dir / "gateway-public.pem").write_text("not a key"),
}


@pytest.mark.parametrize("step", list(BREAKS))
def test_a_failure_at_any_step_of_build_leaves_nothing_running(step: str, tmp_path: Path) -> None:
    """issue 22: `build` started the summary client's keeper (a thread and a TLS connection to the service)
    before its stop was registered, so a bad device key left both running. Every step, broken for real after
    the config check (a file changed since): the exception comes out, no thread and no connection stays."""
    pins = tmp_path / "pins.toml"
    pins.write_text((Path("firmware/mynabox/data/pins.toml")).read_text())
    extra: dict[str, dict[str, object]] = {"panel": {"pins_file": str(pins)}}
    with BoxStack(device_id=f"amb-leak-{step}", with_pcscd=False, config_extra=extra) as stack:
        config = load_config(stack.config_path)
        assert stack.refsvc is not None and stack.broker is not None
        before = {t.ident for t in threading.enumerate()}
        BREAKS[step](stack, tmp_path)
        with pytest.raises(Exception):  # noqa: B017 - each step has its own error; that one comes out
            run_box(config, threading.Event(), notifier=Notifier(None))

        def left() -> list[str]:
            threads = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
            ports = {"summary service": stack.refsvc.port, "broker": stack.broker.port}
            return threads + [
                f"connection to the {name}" for name, port in ports.items() if _connections_to(port)
            ]

        assert wait_for(lambda: not left(), 5), left()
