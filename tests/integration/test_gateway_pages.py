"""The whole handoff: a tap on the daemon, the summary through the broker to `mynabox receive --pages` (a real
subprocess), and the page as a tablet's browser shows it (Debian's Chromium through selenium)."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from gateway.browser import headless_chromium  # tests/gateway (tests/ is on sys.path)
from mynabox.payload.topics import topic
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from mynabox_testkit.messages import patient_body
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from support.daemon import MYNABOX, start_daemon, tap
from support.notify import NotifySocket
from support.wait import wait_for

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack() -> Iterator[BoxStack]:
    with BoxStack(device_id="amb-pages", consent_default="oral") as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


def _receiver(stack: BoxStack, tmp_path: Path, err: Path) -> subprocess.Popen[bytes]:
    kit = stack.kit
    assert kit is not None and stack.broker is not None
    files = kit.pki.client(kit.gateway)
    args = [
        MYNABOX, "receive", "--broker", f"127.0.0.1:{stack.broker.port}", "--ca", str(kit.pki.ca_cert),
        "--cert", str(files.cert), "--key", str(files.key), "--gateway-key", str(kit.gateway_key_file),
        "--device-keys", str(kit.device_keys_dir), "--state-dir", str(tmp_path / "gw"),
        "--client-id", "gw-pages", "--pages", "127.0.0.1:0",
    ]  # fmt: skip
    with err.open("ab") as out:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)


def test_a_tap_becomes_a_page_on_the_tablet(stack: BoxStack, tmp_path: Path) -> None:
    err, log = tmp_path / "receiver.log", tmp_path / "daemon.log"
    receiver = _receiver(stack, tmp_path, err)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: re.search(r"pages on (http://\S+/)", err.read_text()) is not None, 20)
        base = re.search(r"pages on (http://\S+/)", err.read_text())
        assert base is not None
        assert wait_for(lambda: "receiver connected" in err.read_text(), 20), err.read_text()
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        card = tap(stack, "warfarin-elderly")
        try:
            assert wait_for(lambda: "accepted summary" in err.read_text(), 20), log.read_text()
        finally:
            card.remove()

        with headless_chromium() as chrome:
            chrome.get(base.group(1))
            links = chrome.find_elements(By.CSS_SELECTOR, "tbody tr a")
            assert len(links) == 1 and "鈴木 正子" in links[0].text
            links[0].click()
            assert [
                e.get_attribute("data-flag")
                for e in chrome.find_elements(By.CSS_SELECTOR, "#flags [data-flag]")
            ] == ["anticoagulant"]
            assert "ワルファリンK錠1mg「F」" in chrome.find_element(By.ID, "medications").text
        # The page's patient data is in the receiver's memory only: not in its log, not in its state dir.
        assert "鈴木" not in err.read_text()
        stored = [p for p in (tmp_path / "gw").rglob("*") if p.is_file()]
        assert stored and not any("鈴木".encode() in p.read_bytes() for p in stored)
    finally:
        for proc in (daemon, receiver):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert receiver.returncode == 0, err.read_text()


# --- idle connections against the real receiver ----------------------------------------------------------

IDLE_DEVICE = "amb-idle"
IDLE = 1020  # what the attack opened: with the receiver's own descriptors, past 1,024
NOFILE = 1024  # systemd's and Debian's default soft limit, the one the receiver runs with


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_sockets(port: int, n: int) -> list[socket.socket]:
    """Up to ``n`` connections that never send a byte (some the server has already closed: we keep our end);
    stops at the first connect that times out (the server no longer accepts and its backlog is full)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            break
        socks.append(s)
    return socks


def _publish(kit: DeliveryKit, port: int, device: str, token: bytes, where: Path) -> None:
    """As the box would (QoS 1, its certificate), by mosquitto's own client: a paho client here would get a
    descriptor above 1024 beside the idle sockets, which its select() loop cannot use."""
    files = kit.pki.client(device)
    where.write_bytes(token)
    subprocess.run(
        [
            "mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", str(kit.pki.ca_cert),
            "--cert", str(files.cert), "--key", str(files.key), "-i", f"mynabox-{device}", "-V", "mqttv5",
            "-q", "1", "-t", topic(device, "summary"), "-f", str(where),
        ],
        check=True,
        timeout=30,
    )  # fmt: skip


def test_idle_page_connections_do_not_cut_the_receiver_off(tmp_path: Path) -> None:
    """~1,000 silent connections to the pages of a receiver limited to 1,024 descriptors: the tablet still
    gets its list, the receiver does not spin, and after a broker restart a PUBACKed summary is received."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * IDLE + 200:
        pytest.skip(f"this test opens {2 * IDLE} sockets; the hard descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kit = DeliveryKit.create(tmp_path / "kit", devices=(IDLE_DEVICE,))
    err = tmp_path / "receiver.log"
    idle: list[socket.socket] = []
    with Mosquitto(kit.broker_tls, tmp_path / "broker") as broker:
        gw = kit.pki.client(kit.gateway)
        args = [
            "prlimit", f"--nofile={NOFILE}:{NOFILE}", "--",
            MYNABOX, "receive", "--broker", f"localhost:{broker.port}", "--ca", str(kit.pki.ca_cert),
            "--cert", str(gw.cert), "--key", str(gw.key), "--gateway-key", str(kit.gateway_key_file),
            "--device-keys", str(kit.device_keys_dir), "--state-dir", str(tmp_path / "gw"),
            "--pages", "127.0.0.1:0",
        ]  # fmt: skip
        with err.open("ab") as out:
            receiver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)
        try:
            assert wait_for(lambda: re.search(r"pages on http://\S+:(\d+)/", err.read_text()), 20)
            match = re.search(r"pages on http://\S+:(\d+)/", err.read_text())
            assert match is not None
            port = int(match.group(1))
            assert wait_for(lambda: "receiver connected" in err.read_text(), 20), err.read_text()
            assert wait_for(lambda: "gateway 1 mynabox/+/summary" in broker.log(), 20)

            idle += _idle_sockets(port, IDLE)
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                assert response.status == 200
            answered = time.monotonic() - started
            cpu = _cpu_seconds(receiver.pid)
            time.sleep(3)
            busy = (_cpu_seconds(receiver.pid) - cpu) / 3
            print(f"beside {len(idle)} idle connections: GET / in {answered:.3f} s, receiver CPU {busy:.0%}")
            assert busy < 0.5, f"the receiver spins ({busy:.0%} of a core) beside idle connections"

            broker.restart()
            idle += _idle_sockets(port, IDLE)  # and more while it reconnects
            now = datetime.now(UTC)
            kind, body, _ = patient_body(
                patient("warfarin-elderly"), now
            )  # what a box sends: the receiver checks bodies
            sealed = kit.sealer(IDLE_DEVICE).seal(kind, body, now=now, clock_synced=True)
            _publish(kit, broker.port, IDLE_DEVICE, sealed.token, tmp_path / "token")
            assert wait_for(lambda: "accepted summary" in err.read_text(), 40), err.read_text()[-2000:]
            log = err.read_text()
            assert "page server: connection cap reached" in log
            assert "Traceback" not in log
        finally:
            for s in idle:
                s.close()
            receiver.terminate()
            try:
                receiver.wait(10)
            except subprocess.TimeoutExpired:
                receiver.kill()
                receiver.wait()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert receiver.returncode == 0, err.read_text()[-2000:]
