"""The throwaway test PKI: files, permissions, names, and that TLS with it works both ways."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from mynabox_testkit.tlsfiles import certificate_with_cn, make_test_pki


def test_files_and_permissions(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path, clients=("device-1", "device-2"))
    for path in (pki.ca_cert, pki.server_cert, pki.client("device-2").cert):
        assert path.exists()
    for key in (pki.ca_key, pki.server_key, pki.client("device-1").key, pki.client("device-2").key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pki.client("device-1").cert.name == "client-device-1.pem"
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    client = x509.load_pem_x509_certificate(pki.client("device-2").cert.read_bytes())
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "device-2"


def test_mutual_tls_handshake_on_loopback(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path)
    extra = pki.add_client("device-9")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.load_verify_locations(pki.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert()
                seen.append(dict(x[0] for x in peer["subject"])["commonName"])
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
            client_ctx.load_cert_chain(extra.cert, extra.key)
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                assert tls.recv(2) == b"ok"
        finally:
            thread.join(timeout=10)
    assert seen == ["device-9"]


def test_certificate_with_cn_is_shaped_like_a_jpki_auth_certificate() -> None:
    cert = x509.load_der_x509_certificate(certificate_with_cn("ABC123"))
    assert cert.subject.rfc4514_string() == "CN=ABC123,C=JP"
