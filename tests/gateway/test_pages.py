"""The page store's bounds (retention window, bytes per device and in all) and the page server's (connection
cap, deadlines, request size, Host check, TLS with client certificates), over real loopback sockets."""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mynabox.gateway.pages import MIB, PageServer, PageStore, ServerLimits, server_context
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.tls import client_context
from mynabox_testkit.patients import patient
from mynabox_testkit.tlsfiles import make_test_pki
from support.wait import wait_for

from .conftest import DEVICE, OTHER_DEVICE, body_for, seal_and_open


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _opened(n: int, device: str = DEVICE) -> Opened:
    return seal_and_open(*body_for(patient("warfarin-elderly")), seq=n, device=device)


def _listed(store: PageStore) -> list[str]:
    return re.findall(r'href="m/([0-9a-f]{32})"', store.index().decode())


# --- the store ------------------------------------------------------------------------------------------


def test_a_summary_received_before_midnight_is_listed_after_it() -> None:
    clock = Clock(datetime(2026, 4, 1, 14, 58, tzinfo=UTC))  # 23:58 JST
    store = PageStore(retention=timedelta(hours=24), clock=clock)
    opened = _opened(1)
    store.add(opened)
    clock.now += timedelta(minutes=4)  # 00:02 JST, the next day
    assert _listed(store) == [opened.message_id]
    assert "04-01 23:58:00" in store.index().decode()  # the time says which day
    clock.now += timedelta(hours=23, minutes=55)  # 23:57 JST: still within the 24 hours
    assert _listed(store) == [opened.message_id]
    clock.now += timedelta(minutes=2)
    assert _listed(store) == [] and "直近24時間の受信はありません" in store.index().decode()


def test_one_devices_pages_are_bounded_in_bytes_oldest_first(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(datetime(2026, 4, 1, 1, 0, tzinfo=UTC))
    probe = PageStore(retention=timedelta(hours=24), clock=clock)
    probe.add(_opened(1))
    size = probe.bytes_held() + 100  # the pages differ by a few bytes (ids, numbers)
    store = PageStore(
        retention=timedelta(hours=24), max_device_bytes=3 * size, max_total_bytes=100 * size, clock=clock
    )
    mine = [_opened(n) for n in range(1, 11)]
    other = _opened(1, OTHER_DEVICE)
    store.add(other)
    with caplog.at_level(logging.WARNING, logger="mynabox.gateway.pages"):
        for opened in mine:
            clock.now += timedelta(minutes=1)
            store.add(opened)
            assert store.bytes_held(DEVICE) <= 3 * size
            assert store.page(opened.message_id) is not None  # the newest is always kept
    kept = [o.message_id for o in mine if store.page(o.message_id) is not None]
    assert kept == [o.message_id for o in mine[-3:]]  # oldest first
    assert store.page(other.message_id) is not None  # another device's pages are not its budget
    assert "dropped 1 oldest page(s) (1 over amb-tokyo-01's" in caplog.text
    assert "鈴木" not in caplog.text and "ワルファリン" not in caplog.text


def test_all_pages_are_bounded_in_bytes() -> None:
    clock = Clock(datetime(2026, 4, 1, 1, 0, tzinfo=UTC))
    probe = PageStore(retention=timedelta(hours=24), clock=clock)
    probe.add(_opened(1))
    size = probe.bytes_held() + 100
    store = PageStore(
        retention=timedelta(hours=24), max_device_bytes=10 * size, max_total_bytes=4 * size, clock=clock
    )
    sent = []
    for n in range(1, 5):
        for device in (DEVICE, OTHER_DEVICE):
            clock.now += timedelta(minutes=1)
            sent.append(_opened(n, device))
            store.add(sent[-1])
            assert store.bytes_held() <= 4 * size
    assert _listed(store) == [o.message_id for o in reversed(sent[-4:])]


def test_a_page_larger_than_the_budget_is_kept_alone() -> None:
    store = PageStore(retention=timedelta(hours=24), max_device_bytes=1, max_total_bytes=1)
    first, second = _opened(1), _opened(2)
    store.add(first)
    store.add(second)
    assert store.page(first.message_id) is None and store.page(second.message_id) is not None
    assert len(store) == 1


# --- the server -----------------------------------------------------------------------------------------


@pytest.fixture
def store() -> PageStore:
    store = PageStore(retention=timedelta(hours=24))
    store.add(_opened(1))
    return store


@pytest.fixture
def server(store: PageStore) -> Iterator[PageServer]:
    limits = ServerLimits(max_connections=4, request_timeout_s=1.0, io_timeout_s=2.0)
    server = PageServer(store, limits=limits, names=("gateway.local",))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _get(port: int, host: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", "/", skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("gateway.local", 200),
        ("GATEWAY.LOCAL.:{port}", 200),
        ("[::1]:{port}", 200),
        ("attacker.example:{port}", 421),  # DNS rebinding: the attacker's name, our address
        ("gateway.local.attacker.example", 421),
        ("10.0.0.5", 421),
        ("", 421),
        (None, 421),
    ],
)
def test_only_configured_host_names(server: PageServer, host: str | None, status: int) -> None:
    got, body = _get(server.port, None if host is None else host.format(port=server.port))
    assert got == status
    assert (b"amb-tokyo-01" in body) == (status == 200)


def test_host_names_on_loopback_by_address_or_name() -> None:
    from mynabox.gateway.pages import host_names

    for listen in ("127.0.0.1", "localhost", "::1"):
        assert {"localhost", "127.0.0.1", "::1"} <= host_names(listen)
    assert host_names("192.0.2.7", ["Gateway.Local."]) == {"192.0.2.7", "gateway.local"}


def _idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
    return socks


def test_idle_connections_cannot_keep_the_tablet_out(
    server: PageServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mynabox.gateway.pages"):
        idle = _idle(server.port, 60)
        try:
            started = time.monotonic()
            status, _ = _get(server.port, f"127.0.0.1:{server.port}")
            assert status == 200
            print(f"GET / beside 60 idle connections (cap {server.cap}): {time.monotonic() - started:.3f} s")
            assert server.open_connections <= server.cap + 8
        finally:
            for s in idle:
                s.close()
    assert "connection cap reached" in caplog.text


def test_a_dripping_request_is_closed_at_the_request_deadline(server: PageServer) -> None:
    """A byte every 0.3 s keeps each read within its 2 s timeout: only the request's deadline ends it."""
    closed_after = None
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(0.3)
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        while time.monotonic() - started < 10:
            try:
                s.sendall(b"X")
                if s.recv(100) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and 0.9 <= closed_after < 4, closed_after
    assert wait_for(lambda: server.open_connections == 0, 5)
    assert server.notes.get("no request within the deadline: closed") == 1


def test_a_request_larger_than_the_cap_is_refused(server: PageServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(10)
        s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 1000 + b"\r\n")
        s.sendall(b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(30)) + b"\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert not answer.startswith(b"HTTP/1.0 200")
    assert server.notes.get("a connection ended in an error") == 1


def test_the_cap_stays_inside_the_descriptor_limit(store: PageStore) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = len(os.listdir("/proc/self/fd")) + 200  # room for what this process already holds
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        server = PageServer(store, limits=ServerLimits(max_connections=5000, reserve_fds=128))
        try:
            assert server.cap == low - 128
        finally:
            server.stop()
        with pytest.raises(ValueError, match="descriptors"):
            PageServer(store, limits=ServerLimits(reserve_fds=low - 1))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_tls_with_client_certificates(store: PageStore, tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki", clients=("tablet",))
    tls = server_context(pki.server_cert, pki.server_key, pki.ca_cert)
    server = PageServer(store, limits=ServerLimits(io_timeout_s=2.0), tls=tls)
    server.start()
    try:
        tablet = client_context(pki.ca_cert, pki.client("tablet").cert, pki.client("tablet").key)
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tablet, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        anyone = ssl.create_default_context(cafile=str(pki.ca_cert))  # trusts the server, has no certificate
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=anyone, timeout=5)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            conn.request("GET", "/")
            conn.getresponse()
        conn.close()
        # A client that never starts its handshake does not hold up the next one.
        with socket.create_connection(("127.0.0.1", server.port)):
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tablet, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        server.stop()


def test_an_unknown_kind_has_no_page(store: PageStore) -> None:
    before = len(store)
    store.add(seal_and_open(Kind.AUDIT, {"record": {"outcome": "busy"}}))
    assert len(store) == before
    assert store.bytes_held() > 0 and MIB == 1024 * 1024
