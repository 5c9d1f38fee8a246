"""The HTTPS+mTLS summary client against the real reference service and against hostile TLS servers.

Every failure must come back as `Unavailable` with a reason free of patient data, after a bounded number
of attempts; nothing may raise. Sleeps between retries are recorded, not slept.
"""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mynabox.adapters.summary_client import KEEPALIVE_S, HttpsSummaryClient, SummaryClientConfigError
from mynabox.summary.port import Found, LookupResult, NotRegistered, Unavailable
from mynabox_testkit import patients
from mynabox_testkit.refsvc import ReferenceService
from mynabox_testkit.tlsfiles import TestPki, certificate_with_cn, make_test_pki
from support.hostile import DRIP_PLACES, Behaviour, HostileServer, answer, drip, http
from support.wait import wait_for

TODAY = date(2026, 11, 25)
PATIENT = patients.patient("warfarin-elderly")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), clients=("device-1",))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("other-pki"), clients=("device-1",), ca_name="intruder CA")


def start_refsvc(pki: TestPki) -> ReferenceService:
    return ReferenceService(
        cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert, today=TODAY
    ).start()


@pytest.fixture
def refsvc(pki: TestPki) -> Iterator[ReferenceService]:
    service = start_refsvc(pki)
    try:
        yield service
    finally:
        service.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(
    base_url: str, pki: TestPki, *, ca: Path | None = None, identity: TestPki | None = None, **kw: object
) -> tuple[HttpsSummaryClient, Sleeps]:
    sleeps = Sleeps()
    files = (identity or pki).client("device-1")
    options: dict[str, object] = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.2, "sleep": sleeps}
    options.update(kw)
    c = HttpsSummaryClient(
        base_url,
        ca_file=ca or pki.ca_cert,
        client_cert=files.cert,
        client_key=files.key,
        **options,  # type: ignore[arg-type]
    )
    return c, sleeps


def lookup(c: HttpsSummaryClient, card_id: str = PATIENT.card_id) -> LookupResult:
    return c.lookup(certificate_with_cn(card_id))


def assert_clean(result: LookupResult) -> str:
    """Unavailable, and its reason carries nothing of the patient or the card."""
    assert isinstance(result, Unavailable), result
    for secret in (PATIENT.name, PATIENT.kana, PATIENT.card_id, "ワルファリン", PATIENT.insurer_number):
        assert secret not in result.reason
    return result.reason


# --- against the reference service ----------------------------------------------------------------------


@pytest.mark.parametrize("p", [p for p in patients.PATIENTS if p.registered], ids=lambda p: p.key)
def test_found(refsvc: ReferenceService, pki: TestPki, p: patients.SyntheticPatient) -> None:
    c, sleeps = client(refsvc.base_url, pki)
    assert lookup(c, p.card_id) == Found(patients.summary_for(p, TODAY))  # type: ignore[arg-type]
    assert sleeps == []


def test_not_registered(refsvc: ReferenceService, pki: TestPki) -> None:
    c, _ = client(refsvc.base_url, pki)
    assert lookup(c, patients.patient("not-registered").card_id) == NotRegistered()


def test_service_rejects_the_request(refsvc: ReferenceService, pki: TestPki) -> None:
    c, sleeps = client(refsvc.base_url, pki)
    assert "HTTP 400" in assert_clean(c.lookup(b"not a certificate"))
    assert sleeps == []  # a 4xx is not retried


def test_client_certificate_from_another_ca_is_refused(
    refsvc: ReferenceService, pki: TestPki, other_pki: TestPki
) -> None:
    c, sleeps = client(refsvc.base_url, pki, identity=other_pki, retries=1)
    reason = assert_clean(lookup(c))
    assert "TLS" in reason or "connection lost" in reason
    assert len(sleeps) <= 1


def test_server_certificate_from_an_unknown_ca_is_refused(
    refsvc: ReferenceService, pki: TestPki, other_pki: TestPki
) -> None:
    c, sleeps = client(refsvc.base_url, pki, ca=other_pki.ca_cert)
    assert "certificate was not accepted" in assert_clean(lookup(c))
    assert sleeps == []  # retrying cannot cure it


def test_server_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path, server_names=("localhost",))
    service = start_refsvc(pki)
    try:
        c, _ = client(service.base_url, pki)  # https://127.0.0.1:port, not in the certificate
        assert "certificate was not accepted" in assert_clean(lookup(c))
        c, _ = client(f"https://localhost:{service.port}", pki)
        assert isinstance(lookup(c), Found)
    finally:
        service.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_service_down_gives_unavailable_after_bounded_retries(pki: TestPki) -> None:
    c, sleeps = client(f"https://127.0.0.1:{free_port()}", pki, retries=2, backoff_s=0.2)
    assert assert_clean(lookup(c)) == "connection refused (after 3 attempts)"
    assert sleeps == [0.2, 0.4]


def test_backoff_is_capped(pki: TestPki) -> None:
    c, sleeps = client(f"https://127.0.0.1:{free_port()}", pki, retries=5, backoff_s=1.0)
    assert isinstance(lookup(c), Unavailable)
    assert sleeps == [1.0, 2.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("url", "kw"),
    [
        ("http://127.0.0.1:1", {}),
        ("https://", {}),
        ("https://127.0.0.1:99999", {}),
        ("https://127.0.0.1:1/?q=1", {}),
        ("https://127.0.0.1:1", {"timeout_s": 0}),
        ("https://127.0.0.1:1", {"retries": -1}),
    ],
)
def test_bad_configuration_is_refused_at_construction(pki: TestPki, url: str, kw: dict[str, object]) -> None:
    with pytest.raises(SummaryClientConfigError):
        client(url, pki, **kw)


def test_missing_files_are_refused_at_construction(pki: TestPki, tmp_path: Path) -> None:
    with pytest.raises(SummaryClientConfigError):
        client("https://127.0.0.1:1", pki, ca=tmp_path / "missing.pem")
    files = pki.client("device-1")
    with pytest.raises(SummaryClientConfigError) as info:
        HttpsSummaryClient(
            "https://127.0.0.1:1", ca_file=pki.ca_cert, client_cert=files.cert, client_key=pki.server_key
        )
    assert "BEGIN" not in str(info.value)


# --- against hostile servers ----------------------------------------------------------------------------


@pytest.fixture
def hostile(pki: TestPki) -> Iterator[Callable[..., HostileServer]]:
    servers: list[HostileServer] = []

    def start(behaviour: Behaviour, keep_alive: bool = False) -> HostileServer:
        servers.append(HostileServer(pki, behaviour, keep_alive=keep_alive))
        return servers[-1]

    try:
        yield start
    finally:
        for s in servers:
            s.stop()


FOUND_BODY = json.dumps(
    {"status": "found", "summary": patients.summary_for(PATIENT, TODAY).to_json()},  # type: ignore[union-attr]
    ensure_ascii=False,
).encode()

BAD_SUMMARY = json.dumps(
    {"status": "found", "summary": {"schema_version": 1, "patient": {"name": PATIENT.name}}},
    ensure_ascii=False,
).encode()

BAD_DATE = FOUND_BODY.replace(b'"as_of": "2026-11-25"', b'"as_of": "2026-02-30"')
REDIRECT = http(302, b"{}", headers="Location: http://evil.example/\r\n")

HOSTILE_ANSWERS: list[tuple[str, bytes, str]] = [
    ("garbage instead of HTTP", b"\x00\xffnot http\r\n\r\n", "malformed HTTP response"),
    ("not JSON", http(200, b"<html>hello</html>"), "not JSON"),
    ("deeply nested JSON", http(200, b"[" * 100000), "not JSON"),
    ("invalid UTF-8", http(200, b'{"status": "found\xff"}'), "not JSON"),
    ("wrong summary", http(200, BAD_SUMMARY), "malformed summary ($.allergies: missing)"),
    (
        "summary with a bad date",
        http(200, BAD_DATE),
        "malformed summary ($.as_of: not a calendar date)",
    ),
    ("found without summary", http(200, b'{"status": "found"}'), "unexpected response HTTP 200"),
    ("found with extra keys", http(200, FOUND_BODY[:-1] + b', "x": 1}'), "unexpected response HTTP 200"),
    ("200 saying not registered", http(200, b'{"status": "not_registered"}'), "unexpected response HTTP 200"),
    ("404 of some other kind", http(404, b'{"status": "error"}'), "unexpected response HTTP 404"),
    (
        "redirect",
        REDIRECT,
        "unexpected response HTTP 302",
    ),
    (
        "declared oversized",
        http(200, b"{}").replace(b"Content-Length: 2", b"Content-Length: 50000000"),
        "response too large",
    ),
    (
        "body shorter than declared",
        http(200, b"{}").replace(b"Content-Length: 2", b"Content-Length: 20"),
        "malformed HTTP response",
    ),
    ("too many headers", b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", "malformed HTTP response"),
]


@pytest.mark.parametrize(
    ("response", "reason"), [h[1:] for h in HOSTILE_ANSWERS], ids=[h[0] for h in HOSTILE_ANSWERS]
)
def test_hostile_answers_give_unavailable(
    hostile: Callable[..., HostileServer], pki: TestPki, response: bytes, reason: str
) -> None:
    server = hostile(answer(response))
    c, sleeps = client(f"https://127.0.0.1:{server.port}", pki)
    got = assert_clean(lookup(c))
    assert reason in got
    assert sleeps == [] and server.connections == 1  # not worth a retry


def test_streamed_oversized_body(hostile: Callable[..., HostileServer], pki: TestPki) -> None:
    def stream(tls: ssl.SSLSocket, attempt: int, stopping: threading.Event) -> None:
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        chunk = b" " * 65536
        for _ in range(64):  # 4 MiB, more than the 1 MiB limit
            if stopping.is_set():
                return
            tls.sendall(chunk)

    server = hostile(stream)
    c, _ = client(f"https://127.0.0.1:{server.port}", pki)
    assert assert_clean(lookup(c)) == "response too large"


def test_server_errors_are_retried_a_bounded_number_of_times(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    server = hostile(answer(http(500, b'{"status": "error"}')))
    c, sleeps = client(f"https://127.0.0.1:{server.port}", pki, retries=2)
    assert assert_clean(lookup(c)) == "service error HTTP 500 (after 3 attempts)"
    assert server.connections == 3 and sleeps == [0.2, 0.4]


def test_a_retry_can_succeed(hostile: Callable[..., HostileServer], pki: TestPki) -> None:
    def flaky(tls: ssl.SSLSocket, attempt: int, stopping: threading.Event) -> None:
        tls.sendall(http(503, b"{}") if attempt == 1 else http(200, FOUND_BODY))

    server = hostile(flaky)
    c, sleeps = client(f"https://127.0.0.1:{server.port}", pki, retries=2)
    assert lookup(c) == Found(patients.summary_for(PATIENT, TODAY))  # type: ignore[arg-type]
    assert server.connections == 2 and sleeps == [0.2]


def test_connection_closed_without_answer(hostile: Callable[..., HostileServer], pki: TestPki) -> None:
    server = hostile(lambda tls, attempt, stopping: None)  # read the request, then hang up
    c, _ = client(f"https://127.0.0.1:{server.port}", pki, retries=1)
    assert assert_clean(lookup(c)) == "connection lost (after 2 attempts)"
    assert server.connections == 2


def test_silent_server_times_out(hostile: Callable[..., HostileServer], pki: TestPki) -> None:
    server = hostile(lambda tls, attempt, stopping: stopping.wait(10) and None)
    c, _ = client(f"https://127.0.0.1:{server.port}", pki, timeout_s=0.3, retries=1)
    assert assert_clean(lookup(c)) == "timed out waiting for the service (after 2 attempts)"


def test_close_ends_a_lookup_waiting_on_a_silent_service(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    """The daemon's stop: close() wakes the lookup's read at once, instead of leaving it to its timeout."""
    server = hostile(lambda tls, attempt, stopping: stopping.wait(60) and None)
    c, _ = client(f"https://127.0.0.1:{server.port}", pki, timeout_s=60.0, retries=2)
    results: list[LookupResult] = []
    worker = threading.Thread(target=lambda: results.append(lookup(c)))
    worker.start()
    assert wait_for(lambda: len(server.requests) == 1, 10)
    c.close()
    worker.join(timeout=20)  # a third of the timeout: close() ended it, not the clock
    assert not worker.is_alive()
    reason = assert_clean(results[0])
    assert "timed out waiting" not in reason and reason.endswith("the box is stopping (after 1 attempt)")
    assert server.connections == 1


def test_slow_drip_is_cut_by_the_overall_deadline(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    def drip(tls: ssl.SSLSocket, attempt: int, stopping: threading.Event) -> None:
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not stopping.is_set():
            tls.sendall(b" ")
            time.sleep(0.05)

    server = hostile(drip)
    c, _ = client(f"https://127.0.0.1:{server.port}", pki, timeout_s=0.5, retries=0)
    assert assert_clean(lookup(c)) == "timed out waiting for the service (after 1 attempt)"


def test_retries_stop_at_the_lookup_time_limit(hostile: Callable[..., HostileServer], pki: TestPki) -> None:
    """A link that swallows everything: the attempts together stay within limit_s, not retries × timeout."""
    server = hostile(lambda tls, attempt, stopping: stopping.wait(10) and None)
    c, _ = client(f"https://127.0.0.1:{server.port}", pki, timeout_s=0.3, retries=10, limit_s=1.0)
    reason = assert_clean(lookup(c))
    attempts = server.connections
    assert 1 <= attempts <= 4  # 10 retries were allowed; ≥ 0.3 s each leaves room for 4 at most
    plural = "s" if attempts > 1 else ""
    assert (
        reason == f"timed out waiting for the service, out of lookup time (after {attempts} attempt{plural})"
    )


def test_one_attempt_is_cut_at_the_lookup_time_limit(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    server = hostile(lambda tls, attempt, stopping: stopping.wait(10) and None)
    c, _ = client(f"https://127.0.0.1:{server.port}", pki, timeout_s=8.0, retries=0, limit_s=1.0)
    started = time.monotonic()
    assert assert_clean(lookup(c)) == "timed out waiting for the service (after 1 attempt)"
    assert time.monotonic() - started < 6.0  # cut by the 1 s limit, not the 8 s attempt timeout


def test_a_limit_that_is_not_positive_is_refused(pki: TestPki) -> None:
    with pytest.raises(SummaryClientConfigError):
        client("https://127.0.0.1:1", pki, limit_s=0.0)


# --- the name lookup: glibc's resolver in a mount namespace with our own /etc/hosts and resolv.conf ------

SERVICE_NAME = "summary.mynabox.test"
SILENT_DNS = "127.0.0.153"  # a loopback address where our socket takes queries and never answers
IN_NAMESPACE = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"'
LOOKUP_SCRIPT = """
import json, sys, time
from mynabox.adapters.summary_client import HttpsSummaryClient
from mynabox_testkit.tlsfiles import certificate_with_cn
a = json.loads(sys.argv[1])
c = HttpsSummaryClient(a["url"], ca_file=a["ca"], client_cert=a["cert"], client_key=a["key"],
                       timeout_s=5.0, retries=2, limit_s=a["limit_s"])
started = time.monotonic()
result = c.lookup(certificate_with_cn(a["card_id"]))
print(json.dumps({"s": time.monotonic() - started, "kind": type(result).__name__,
                  "reason": getattr(result, "reason", "")}))
"""


@pytest.fixture(scope="module")
def named_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("named-pki"), server_names=(SERVICE_NAME,))


@pytest.fixture
def silent_dns() -> Iterator[None]:
    """A name server that swallows every query, as a mobile link in a tunnel does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((SILENT_DNS, 53))
        yield
    finally:
        sock.close()


def lookup_in_namespace(
    tmp_path: Path, pki: TestPki, port: int, hosts: str, limit_s: float
) -> dict[str, Any]:
    """The client in a child process that sees our hosts file and a resolv.conf naming the silent server."""
    (tmp_path / "hosts").write_text(hosts)
    (tmp_path / "resolv.conf").write_text(f"nameserver {SILENT_DNS}\noptions timeout:5 attempts:2\n")
    files = pki.client("device-1")
    args = {
        "url": f"https://{SERVICE_NAME}:{port}",
        "ca": str(pki.ca_cert),
        "cert": str(files.cert),
        "key": str(files.key),
        "limit_s": limit_s,
        "card_id": PATIENT.card_id,
    }
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", IN_NAMESPACE, "sh"]
    command += [str(tmp_path / "hosts"), str(tmp_path / "resolv.conf")]
    command += [sys.executable, "-c", LOOKUP_SCRIPT, json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_a_resolver_that_never_answers_is_cut_at_the_lookup_time_limit(
    tmp_path: Path, named_pki: TestPki, silent_dns: None
) -> None:
    service = start_refsvc(named_pki)
    try:
        answer = lookup_in_namespace(tmp_path, named_pki, service.port, "127.0.0.1 localhost\n", limit_s=2.0)
    finally:
        service.stop()
    assert answer["kind"] == "Unavailable" and answer["reason"].startswith("name lookup timed out"), answer
    assert answer["s"] < 4.0  # the resolver alone would take 10 s (5 s × 2 tries) per attempt


def test_the_name_is_resolved_and_still_checked_against_the_certificate(
    tmp_path: Path, named_pki: TestPki, silent_dns: None
) -> None:
    service = start_refsvc(named_pki)
    try:
        # nsswitch asks files first: the silent server is not reached.
        hosts = f"127.0.0.1 localhost\n127.0.0.1 {SERVICE_NAME}\n"
        answer = lookup_in_namespace(tmp_path, named_pki, service.port, hosts, limit_s=10.0)
    finally:
        service.stop()
    assert answer["kind"] == "Found", answer


# --- a server that drips: the lookup's limit holds wherever the bytes trickle -----------------------------


@pytest.mark.parametrize(("prefix", "byte"), DRIP_PLACES.values(), ids=DRIP_PLACES.keys())
def test_a_dripping_server_is_cut_at_the_lookup_time_limit(
    hostile: Callable[..., HostileServer], pki: TestPki, prefix: bytes, byte: bytes
) -> None:
    """One byte every 0.2 s keeps every socket read (1 s timeout) busy: only the limit ends it."""
    server = hostile(drip(prefix, byte, every_s=0.2, for_s=8.0))
    c, _ = client(server.base_url, pki, timeout_s=1.0, retries=2, limit_s=1.5)
    started = time.monotonic()
    reason = assert_clean(lookup(c))
    took = time.monotonic() - started
    assert took < 1.5 + 0.3, f"{took:.1f} s"
    assert reason.startswith("timed out waiting for the service"), reason


# --- the warm connection ------------------------------------------------------------------------------


def per_request(*answers: Behaviour) -> Behaviour:
    """The n-th request on a connection gets answers[n] (the last one for any after)."""
    seen: dict[int, int] = {}

    def behave(tls: ssl.SSLSocket, number: int, stopping: threading.Event) -> None:
        n = seen[number] = seen.get(number, -1) + 1
        answers[min(n, len(answers) - 1)](tls, number, stopping)

    return behave


def hang_up(tls: ssl.SSLSocket, number: int, stopping: threading.Event) -> None:
    raise OSError("hang up")  # the server closes the connection without answering


def test_later_lookups_reuse_the_connection(refsvc: ReferenceService, pki: TestPki) -> None:
    c, _ = client(refsvc.base_url, pki)
    for _ in range(3):
        assert isinstance(lookup(c), Found)
    assert refsvc.stats["connections"] == 1
    c.close()


def test_connection_per_lookup_is_the_peer(refsvc: ReferenceService, pki: TestPki) -> None:
    c, _ = client(refsvc.base_url, pki, keepalive_s=None)
    for _ in range(3):
        assert isinstance(lookup(c), Found)
    assert refsvc.stats == {"connections": 3, "resumed": 0}


def test_a_dropped_connection_is_re_established_in_the_background_resuming_the_session(
    refsvc: ReferenceService, pki: TestPki
) -> None:
    c, sleeps = client(refsvc.base_url, pki)
    c.start()
    try:
        assert wait_for(lambda: refsvc.stats["connections"] == 1, 5)  # connected at start, before any lookup
        assert isinstance(lookup(c), Found)
        refsvc.hang_up_all()  # a service restart, or its load balancer's idle timeout
        assert wait_for(lambda: refsvc.stats["connections"] == 2, 5)
        assert refsvc.stats["resumed"] == 1  # TLS 1.3 resumption with the ticket of the first exchange
        assert isinstance(lookup(c), Found)
        assert refsvc.stats["connections"] == 2 and sleeps == []
    finally:
        c.close()


def test_a_server_that_closed_the_kept_connection_costs_no_retry(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    """The server reads our request on the kept connection and closes it (its idle timer won the race): the
    request goes once more on a new connection at once, with no backoff and no failure."""
    server = hostile(per_request(answer(http(200, FOUND_BODY)), hang_up), keep_alive=True)
    c, sleeps = client(server.base_url, pki, retries=0)
    assert isinstance(lookup(c), Found)
    assert isinstance(lookup(c), Found)
    assert server.connections == 2 and sleeps == []
    assert len(server.requests) == 3  # the second lookup's request went twice


def test_an_idle_connection_is_kept_alive_with_health_requests(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    server = hostile(answer(http(200, b'{"status": "ok"}')), keep_alive=True)
    c, _ = client(server.base_url, pki, keepalive_s=0.3)
    c.start()
    try:
        assert wait_for(lambda: len(server.requests) >= 3, 5)
    finally:
        c.close()
    assert all(r.startswith(b"GET /v1/health ") for r in server.requests)
    assert server.connections == 1


def test_a_session_is_resumed_only_within_its_lifetime(refsvc: ReferenceService, pki: TestPki) -> None:
    c, _ = client(refsvc.base_url, pki, session_max_s=0.5)
    assert isinstance(lookup(c), Found)
    refsvc.hang_up_all()
    assert wait_for(lambda: c._pool.idle is None or not c._pool.idle.clean(), 5)
    assert isinstance(lookup(c), Found)  # within 0.5 s: resumed
    refsvc.hang_up_all()
    time.sleep(0.6)
    assert isinstance(lookup(c), Found)  # the ticket is too old: a full handshake, chain checked again
    assert refsvc.stats == {"connections": 3, "resumed": 1}


def _rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def test_keeping_the_session_does_not_grow_the_memory(refsvc: ReferenceService, pki: TestPki) -> None:
    """CPython's `SSLSocket.session` copies the session at every read and never frees the copy (≈ 5.6 KB on
    3.11 with OpenSSL 3): the client reads it once per connection, not at every clean exchange."""
    c, _ = client(refsvc.base_url, pki)
    try:
        assert isinstance(lookup(c), Found)
        conn = c._pool.idle
        assert conn is not None
        before = _rss_kib()
        for _ in range(2000):  # 2000 clean exchanges on the kept connection, as far as the session goes
            c._context.keep_session(conn.sock, c._pool.host)  # type: ignore[arg-type]
        assert _rss_kib() - before < 2048  # reading .session each time: ≈ 11 MB
        assert isinstance(lookup(c), Found)
    finally:
        c.close()


def test_a_server_without_our_ca_is_refused_on_reconnect_despite_a_session(
    pki: TestPki, other_pki: TestPki
) -> None:
    service = start_refsvc(pki)
    port = service.port
    c, _ = client(service.base_url, pki)
    assert isinstance(lookup(c), Found)  # holds a session ticket now
    service.stop()
    intruder = ReferenceService(
        cert_file=other_pki.server_cert,
        key_file=other_pki.server_key,
        client_ca_file=pki.ca_cert,
        port=port,
        today=TODAY,
    ).start()
    try:
        assert "certificate was not accepted" in assert_clean(lookup(c))
    finally:
        intruder.stop()


def test_a_server_dripping_on_the_kept_connection_is_cut_at_the_limit(
    hostile: Callable[..., HostileServer], pki: TestPki
) -> None:
    prefix, byte = DRIP_PLACES["headers"]
    dripping = drip(prefix, byte, every_s=0.2, for_s=8)
    server = hostile(per_request(answer(http(200, FOUND_BODY)), dripping), keep_alive=True)
    c, _ = client(server.base_url, pki, timeout_s=5.0, retries=0, limit_s=1.5)  # a retry would get a new one
    assert isinstance(lookup(c), Found)
    started = time.monotonic()
    assert assert_clean(lookup(c)).startswith("timed out waiting for the service")
    assert time.monotonic() - started < 1.5 + 0.3


def strings_reachable_from(root: object, limit: int = 200_000) -> Iterator[bytes | str]:
    """Every bytes-like and str object reachable from `root` through gc referents."""
    seen: set[int] = set()
    todo = [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType):
            continue
        seen.add(id(obj))
        if isinstance(obj, str | bytes):
            yield obj
        elif isinstance(obj, bytearray | memoryview):
            yield bytes(obj)
        else:
            todo.extend(gc.get_referents(obj))


def test_no_patient_data_stays_in_the_kept_connection(refsvc: ReferenceService, pki: TestPki) -> None:
    c, _ = client(refsvc.base_url, pki)
    result = lookup(c)
    assert isinstance(result, Found)
    secrets = [PATIENT.name, PATIENT.kana, "ワルファリン", PATIENT.card_id]
    # The walk finds a secret where one is held (here, the result itself) ...
    assert any(s in t for t in strings_reachable_from(result) for s in secrets if isinstance(t, str))
    conn = c._pool.idle
    assert conn is not None and conn.sock is not None and conn.sock.pending() == 0
    # ... and nothing of the patient in the connection that waits for the next lookup.
    encoded = [s.encode() for s in secrets] + [s.encode("unicode_escape") for s in secrets]
    for text in strings_reachable_from(conn):
        held = text.encode() if isinstance(text, str) else text
        assert not any(s in held for s in encoded)
    c.close()


def test_the_service_address_is_cached_within_its_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = make_test_pki(tmp_path, clients=("device-1",), server_names=("localhost",))
    service = start_refsvc(named)
    calls: list[str] = []
    real = socket.getaddrinfo

    def counting(host: str, *args: Any, **kw: Any) -> Any:
        calls.append(host)
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    try:
        for ttl, expected in ((300.0, 1), (0.0, 2)):
            calls.clear()
            c, _ = client(f"https://localhost:{service.port}", named, dns_ttl_s=ttl)
            assert isinstance(lookup(c), Found)
            service.hang_up_all()  # the next lookup needs a new connection, hence an address
            assert wait_for(lambda c=c: c._pool.idle is None or not c._pool.idle.clean(), 5)
            assert isinstance(lookup(c), Found)
            assert calls.count("localhost") == expected
            c.close()
    finally:
        service.stop()


def open_descriptors() -> dict[str, str]:
    """This process's open file descriptors and what each is (the reference service runs in it too)."""
    fds = {}
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed since
            fds[fd.name] = fd.readlink().as_posix()
    return fds


@pytest.mark.parametrize(
    ("keepalive_s", "keeper"),
    [(KEEPALIVE_S, True), (KEEPALIVE_S, False), (None, False)],
    ids=["kept-warm", "not-started", "per-lookup"],
)
def test_a_closed_client_holds_no_descriptor(
    refsvc: ReferenceService, pki: TestPki, keepalive_s: float | None, keeper: bool
) -> None:
    """A client's whole life, on the real reference service: what it opened, close() gave back, even while
    the client object lives on (the daemon keeps its parts until it exits; no GC to rescue it)."""
    before = open_descriptors()
    c, _ = client(refsvc.base_url, pki, keepalive_s=keepalive_s)
    if keeper:
        c.start()
    assert isinstance(lookup(c), Found)
    c.close()
    # The service closes its side of the connection when it sees ours go: wait for that, not for us.
    assert wait_for(lambda: open_descriptors().keys() <= before.keys(), 5), {
        fd: what for fd, what in open_descriptors().items() if fd not in before
    }
    assert c is not None
