"""A throwaway test PKI on disk: one CA, a server certificate, client certificates.

Used by the reference summary service, the MQTT broker tests and the demo. EC P-256 keys, because they are
made in milliseconds. Private keys are written unencrypted with mode 0600 into the directory given (a test's
temporary directory); nothing here is fit for production use.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TestPki:
    __test__ = False  # not a pytest test class

    dir: Path
    ca_cert: Path
    ca_key: Path
    server: CertFiles
    clients: Mapping[str, CertFiles]

    @property
    def server_cert(self) -> Path:
        return self.server.cert

    @property
    def server_key(self) -> Path:
        return self.server.key

    def client(self, name: str) -> CertFiles:
        return self.clients[name]

    def add_client(self, name: str, *, days: int = 2) -> CertFiles:
        """Issue one more client certificate from this CA (e.g. for a second device)."""
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("test CA key is not an EC key")
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        return _issue_client(self.dir, name, ca_cert, ca_key, days)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mynabox test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
    )


def _leaf(
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    days: int,
    usage: x509.ObjectIdentifier,
) -> tuple[x509.CertificateBuilder, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(name), ca_cert.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return builder, key


def _issue_client(
    dirpath: Path, name: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, days: int
) -> CertFiles:
    builder, key = _leaf(name, ca_cert, ca_key, days, ExtendedKeyUsageOID.CLIENT_AUTH)
    files = CertFiles(dirpath / f"client-{name}.pem", dirpath / f"client-{name}.key")
    _write_cert(files.cert, builder.sign(ca_key, hashes.SHA256()))
    _write_key(files.key, key)
    return files


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def make_test_pki(
    dirpath: Path | str,
    *,
    server_names: Iterable[str] = ("localhost", "127.0.0.1"),
    clients: Iterable[str] = ("device-1",),
    ca_name: str = "mynabox test CA",
    days: int = 2,
) -> TestPki:
    """Write ca.pem/ca.key, server.pem/server.key and client-<name>.pem/.key into `dirpath`."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    server_names = tuple(server_names)
    if not server_names:
        raise ValueError("at least one server name is needed")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        _builder(_name(ca_name), _name(ca_name), ca_key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_cert(d / "ca.pem", ca_cert)
    _write_key(d / "ca.key", ca_key)

    builder, server_key = _leaf(server_names[0], ca_cert, ca_key, days, ExtendedKeyUsageOID.SERVER_AUTH)
    server_cert = builder.add_extension(_san(server_names), critical=False).sign(ca_key, hashes.SHA256())
    server = CertFiles(d / "server.pem", d / "server.key")
    _write_cert(server.cert, server_cert)
    _write_key(server.key, server_key)

    issued = {name: _issue_client(d, name, ca_cert, ca_key, days) for name in clients}
    return TestPki(dir=d, ca_cert=d / "ca.pem", ca_key=d / "ca.key", server=server, clients=issued)


def certificate_with_cn(common_name: str, *, country: str = "JP") -> bytes:
    """A self-signed DER certificate whose subject is only C=JP, CN=<common_name>, as on a JPKI
    user-auth certificate; for tests that need some certificate carrying a given card ID."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = _builder(subject, subject, key, 30).sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)
