"""The reference summary service over real HTTPS with mutual TLS on loopback, including hostile clients."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mynabox.summary.model import Summary
from mynabox.summary.port import Found, NotRegistered, Unavailable
from mynabox_testkit import patients
from mynabox_testkit.refsvc import HEALTH_PATH, LOOKUP_PATH, InProcessLookup, ReferenceService
from mynabox_testkit.tlsfiles import TestPki, certificate_with_cn, make_test_pki

TODAY = date(2026, 11, 30)  # for the services these tests start themselves
SERVICE_TODAY = date(2026, 11, 25)  # the `refsvc` fixture's date


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), clients=("device-1",))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A second, unrelated CA: its certificates must be refused."""
    return make_test_pki(tmp_path_factory.mktemp("other-pki"), clients=("device-1",), ca_name="intruder CA")


@pytest.fixture
def refsvc(pki: TestPki) -> Iterator[ReferenceService]:
    service = ReferenceService(
        cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert, today=SERVICE_TODAY
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


def client_context(pki: TestPki, *, with_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if with_cert:
        files = pki.client("device-1")
        ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def exchange(port: int, ctx: ssl.SSLContext, data: bytes) -> bytes:
    """Send raw bytes over TLS and read until the server closes."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(data)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def parse(response: bytes) -> tuple[int, dict[str, Any] | None]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    return status, doc


def request(
    port: int,
    pki: TestPki,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    all_headers = dict(headers or {})
    if body is not None and "Content-Length" not in all_headers and "Transfer-Encoding" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    return parse(exchange(port, client_context(pki), data))


def lookup_body(certificate: bytes) -> bytes:
    return json.dumps({"certificate": base64.b64encode(certificate).decode()}).encode()


def healthy(svc: ReferenceService, pki: TestPki) -> bool:
    return request(svc.port, pki, "GET", "/v1/health") == (200, {"status": "ok"})


def test_health(refsvc: ReferenceService, pki: TestPki) -> None:
    assert healthy(refsvc, pki)


@pytest.mark.parametrize("p", [p for p in patients.PATIENTS if p.registered], ids=lambda p: p.key)
def test_found_by_certificate_cn(
    refsvc: ReferenceService, pki: TestPki, p: patients.SyntheticPatient
) -> None:
    status, doc = request(refsvc.port, pki, "POST", LOOKUP_PATH, lookup_body(certificate_with_cn(p.card_id)))
    assert status == 200 and doc is not None
    assert doc["status"] == "found"
    assert Summary.from_json(doc["summary"]) == patients.summary_for(p, SERVICE_TODAY)


@pytest.mark.parametrize("card_id", [patients.patient("not-registered").card_id, "UNKNOWNCARD0000000000000"])
def test_not_registered(refsvc: ReferenceService, pki: TestPki, card_id: str) -> None:
    status, doc = request(refsvc.port, pki, "POST", LOOKUP_PATH, lookup_body(certificate_with_cn(card_id)))
    assert (status, doc) == (404, {"status": "not_registered"})


def _cert_without_cn() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


HOSTILE: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    ("not JSON", "POST", LOOKUP_PATH, b"certificate=abc", {}, 400),
    ("JSON list", "POST", LOOKUP_PATH, b"[1, 2]", {}, 400),
    ("certificate not a string", "POST", LOOKUP_PATH, b'{"certificate": 5}', {}, 400),
    ("extra key", "POST", LOOKUP_PATH, b'{"certificate": "", "name": "x"}', {}, 400),
    ("not base64", "POST", LOOKUP_PATH, b'{"certificate": "!!!"}', {}, 400),
    ("not a certificate", "POST", LOOKUP_PATH, lookup_body(b"\x30\x03\x02\x01\x00"), {}, 400),
    ("certificate without CN", "POST", LOOKUP_PATH, lookup_body(_cert_without_cn()), {}, 400),
    ("deeply nested JSON", "POST", LOOKUP_PATH, b"[" * 60000, {}, 400),
    ("invalid UTF-8", "POST", LOOKUP_PATH, b'{"certificate": "\xff\xfe"}', {}, 400),
    ("declared huge body", "POST", LOOKUP_PATH, b"", {"Content-Length": "10000000"}, 413),
    ("no Content-Length", "POST", LOOKUP_PATH, None, {}, 411),
    ("chunked", "POST", LOOKUP_PATH, b"0\r\n\r\n", {"Transfer-Encoding": "chunked"}, 411),
    ("bad Content-Length", "POST", LOOKUP_PATH, b"", {"Content-Length": "abc"}, 400),
    ("negative Content-Length", "POST", LOOKUP_PATH, b"", {"Content-Length": "-1"}, 400),
    ("unknown path", "POST", "/v1/admin", b"{}", {}, 404),
    ("GET on lookups", "GET", LOOKUP_PATH, None, {}, 405),
    ("PUT", "PUT", LOOKUP_PATH, b"{}", {}, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "expected"),
    [h[1:] for h in HOSTILE],
    ids=[h[0] for h in HOSTILE],
)
def test_hostile_requests_get_a_clear_4xx(
    refsvc: ReferenceService,
    pki: TestPki,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    expected: int,
) -> None:
    status, doc = request(refsvc.port, pki, method, path, body, headers)
    assert status == expected
    assert doc is not None and doc["status"] == "error" and doc["error"]
    assert healthy(refsvc, pki)


def test_garbage_instead_of_http(refsvc: ReferenceService, pki: TestPki) -> None:
    status, doc = parse(exchange(refsvc.port, client_context(pki), b"\x00\x01garbage \xff\r\n\r\n"))
    assert status == 400
    assert doc == {"status": "error", "error": "Bad Request"}
    assert healthy(refsvc, pki)


def test_huge_body_is_refused_before_reading_it(refsvc: ReferenceService, pki: TestPki) -> None:
    body = b"x" * (200 * 1024)
    status, _ = parse(
        exchange(
            refsvc.port,
            client_context(pki),
            f"POST {LOOKUP_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode(),
        )
    )
    assert status == 413
    assert healthy(refsvc, pki)


def test_client_without_certificate_is_refused(refsvc: ReferenceService, pki: TestPki) -> None:
    ctx = client_context(pki, with_cert=False)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        # TLS 1.3: the client finishes its handshake first; the refusal arrives with the first read.
        exchange(refsvc.port, ctx, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert healthy(refsvc, pki)


def test_client_certificate_from_another_ca_is_refused(
    refsvc: ReferenceService, pki: TestPki, other_pki: TestPki
) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    intruder = other_pki.client("device-1")
    ctx.load_cert_chain(str(intruder.cert), str(intruder.key))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        exchange(refsvc.port, ctx, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert healthy(refsvc, pki)


def test_stalled_client_does_not_block_others(refsvc: ReferenceService, pki: TestPki) -> None:
    # A TCP connection that never starts its TLS handshake holds one thread at most.
    with socket.create_connection(("127.0.0.1", refsvc.port), timeout=10):
        assert healthy(refsvc, pki)


def test_in_process_lookup() -> None:
    lookup = InProcessLookup(TODAY)
    p = patients.patient("dialysis")
    result = lookup.lookup(certificate_with_cn(p.card_id))
    assert isinstance(result, Found) and result.summary == patients.summary_for(p, TODAY)
    assert lookup.lookup(certificate_with_cn(patients.patient("not-registered").card_id)) == NotRegistered()
    assert isinstance(lookup.lookup(b"junk"), Unavailable)


CLI = (
    "import argparse, sys\n"
    "from mynabox.commands import refsvc\n"
    "parser = argparse.ArgumentParser()\n"
    "refsvc.add_arguments(parser)\n"
    "sys.exit(refsvc.run(parser.parse_args(sys.argv[1:])))\n"
)


@pytest.mark.stack
def test_cli_serves_and_stops_on_sigterm(pki: TestPki) -> None:
    args = ["--port", "0", "--cert", str(pki.server_cert), "--key", str(pki.server_key)]
    args += ["--client-ca", str(pki.ca_cert), "--today", TODAY.isoformat()]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("refsvc listening on https://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        p = patients.patient("insulin-diabetic")
        status, doc = request(port, pki, "POST", LOOKUP_PATH, lookup_body(certificate_with_cn(p.card_id)))
        assert status == 200 and doc is not None
        assert Summary.from_json(doc["summary"]) == patients.summary_for(p, TODAY)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        _, err = proc.communicate(timeout=5)
        # The log names outcomes, never the patient or the card.
        assert "200 found" in err
        assert p.name not in err and p.card_id not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_cli_reports_bad_files(tmp_path: Any) -> None:
    missing = str(tmp_path / "missing.pem")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "--port",
            "0",
            "--cert",
            missing,
            "--key",
            missing,
            "--client-ca",
            missing,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot start" in result.stderr


def test_openapi_file_documents_what_is_served() -> None:
    # No YAML parser among the dependencies: check the facts the file must state, textually.
    spec_path = Path(__file__).resolve().parents[2] / "docs" / "summary-api.openapi.yaml"
    spec = spec_path.read_text(encoding="utf-8")
    assert spec.startswith("openapi: 3.1.")
    for path in (LOOKUP_PATH, HEALTH_PATH):
        assert f"\n  {path}:\n" in spec
    for status in ("found", "not_registered", "error"):
        assert f"const: {status}" in spec
    ref = next(
        line.split('"')[1] for line in spec.splitlines() if "summary.schema.json" in line and "$ref" in line
    )
    assert (spec_path.parent / ref).resolve().is_file()
