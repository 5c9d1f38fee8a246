"""A test JPKI hierarchy shaped like J-LIS's, deterministic per card id.

Roots: `C=JP, O=JPKI-TEST, OU=JPKI for user authentication|digital signature, OU=Japan Agency for Local
Authority Information Systems` (real J-LIS roots say `O=JPKI`; test cards say `O=JPKI-TEST`). End-entity
auth certificates carry only `C=JP, CN=<opaque card id>`, like real ones. Keys come from a committed
TEST-ONLY pool (RSA keygen cannot be seeded) and PKCS#1 v1.5 signatures are deterministic, so the same
card id gives byte-identical DER on every run.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID, ObjectIdentifier

JLIS_OU = "Japan Agency for Local Authority Information Systems"
AUTH_OU = "JPKI for user authentication"
SIGN_OU = "JPKI for digital signature"
CA_VALIDITY = (datetime(2023, 7, 16, tzinfo=UTC), datetime(2033, 7, 15, 14, 59, 59, tzinfo=UTC))
EE_VALIDITY = (datetime(2025, 1, 6, tzinfo=UTC), datetime(2030, 2, 17, 14, 59, 59, tzinfo=UTC))
EE_POOL = ("ee-0", "ee-1", "ee-2", "ee-3")

# subjectAltName otherName OIDs of the signing certificate's four attributes (card-protocol.md §2).
AUTH_POLICY = ObjectIdentifier("1.2.392.200149.8.5.1.3.30")
SIGN_POLICY = ObjectIdentifier("1.2.392.200149.8.5.1.1.20")
OID_NAME = ObjectIdentifier("1.2.392.200149.8.5.5.1")
OID_SEX = ObjectIdentifier("1.2.392.200149.8.5.5.3")
OID_BIRTH = ObjectIdentifier("1.2.392.200149.8.5.5.4")
OID_ADDRESS = ObjectIdentifier("1.2.392.200149.8.5.5.5")


@cache
def _pool_key(name: str) -> rsa.RSAPrivateKey:
    pem = resources.files("mynabox_testkit").joinpath(f"data/test-{name}.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("test key pool holds a non-RSA key")
    return key


def _root_name(ou: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, JLIS_OU),
        ]
    )


@cache
def _root(kind: str) -> x509.Certificate:
    key = _pool_key(f"ca-{kind}")
    name = _root_name(AUTH_OU if kind == "auth" else SIGN_OU)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x06D18006 if kind == "auth" else 0x067C6A21)
        .not_valid_before(CA_VALIDITY[0])
        .not_valid_after(CA_VALIDITY[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _usage(*, cert_sign: bool = False, non_repudiation: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _digest(card_id: str, label: str) -> bytes:
    return hashlib.sha256(f"mynabox test jpki {label} {card_id}".encode()).digest()


def _ee_key_name(card_id: str) -> str:
    return EE_POOL[_digest(card_id, "key")[0] % len(EE_POOL)]


def auth_private_key(card_id: str) -> rsa.RSAPrivateKey:
    return _pool_key(_ee_key_name(card_id))


def sign_private_key(card_id: str) -> rsa.RSAPrivateKey:
    # The signing key differs from the auth key, as on a real card.
    names = EE_POOL
    return _pool_key(names[(names.index(_ee_key_name(card_id)) + 1) % len(names)])


def _ee_builder(card_id: str, label: str, subject: x509.Name, kind: str) -> x509.CertificateBuilder:
    root = _root(kind)
    public = (
        auth_private_key(card_id).public_key() if kind == "auth" else sign_private_key(card_id).public_key()
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public)
        .serial_number(int.from_bytes(_digest(card_id, label)[:4], "big") | 1)
        .not_valid_before(EE_VALIDITY[0])
        .not_valid_after(EE_VALIDITY[1])
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_pool_key(f"ca-{kind}").public_key()),
            critical=False,
        )
        # Policy, CRL and OCSP pointers as real JPKI certificates carry them (test URLs; never fetched).
        .add_extension(
            x509.CertificatePolicies(
                [
                    x509.PolicyInformation(
                        AUTH_POLICY if kind == "auth" else SIGN_POLICY,
                        [f"http://jpki-test.invalid/cps/{kind}.html"],
                    )
                ]
            ),
            critical=True,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(f"http://jpki-test.invalid/crl/{kind}/{part}.crl")],
                        None,
                        None,
                        None,
                    )
                    for part in ("full", "delta")
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(f"http://jpki-test.invalid/ocsp/{kind}"),
                    )
                ]
            ),
            critical=False,
        )
    )


@lru_cache(maxsize=64)
def auth_certificate(card_id: str) -> bytes:
    """The 利用者証明用電子証明書 of a test card, DER."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, card_id)]
    )
    cert = (
        _ee_builder(card_id, "auth", subject, "auth")
        .add_extension(_usage(), critical=True)
        .sign(_pool_key("ca-auth"), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _utf8(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 127:
        raise ValueError("attribute too long for the test certificate")
    return bytes((0x0C, len(raw))) + raw


@lru_cache(maxsize=64)
def sign_certificate(card_id: str) -> bytes:
    """The 署名用電子証明書 of a test card: synthetic 4 attributes in subjectAltName otherNames."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Tokyo-to"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Test-shi"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"S{card_id[:22]}"),
        ]
    )
    alt = x509.SubjectAlternativeName(
        [
            x509.OtherName(OID_NAME, _utf8("試験　花子")),
            x509.OtherName(OID_SEX, _utf8("2")),
            x509.OtherName(OID_BIRTH, _utf8("419800217")),
            x509.OtherName(OID_ADDRESS, _utf8("東京都試験市一丁目１番")),
        ]
    )
    cert = (
        _ee_builder(card_id, "sign", subject, "sign")
        .add_extension(_usage(non_repudiation=True), critical=True)
        .add_extension(alt, critical=False)
        .sign(_pool_key("ca-sign"), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_ca_pem() -> bytes:
    """The test auth root, PEM: what `device.test_mode` adds to the trust store."""
    return _root("auth").public_bytes(serialization.Encoding.PEM)


def test_ca_der() -> bytes:
    return _root("auth").public_bytes(serialization.Encoding.DER)


def sign_ca_pem() -> bytes:
    return _root("sign").public_bytes(serialization.Encoding.PEM)


def sign_ca_der() -> bytes:
    return _root("sign").public_bytes(serialization.Encoding.DER)
