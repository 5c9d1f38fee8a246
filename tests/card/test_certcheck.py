"""Advisory certificate check: real J-LIS roots load; chains, dates and garbage give data, not exceptions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from mynabox.card.certcheck import CertStatus, Root, TrustStore, check_certificate

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _name(*ous: str, cn: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]
    if cn is None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"))
        attrs += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou) for ou in ous]
    else:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@pytest.fixture(scope="module")
def pki() -> tuple[bytes, rsa.RSAPrivateKey, x509.Name]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name("JPKI for user authentication", "Japan Agency for Local Authority Information Systems")
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return root.public_bytes(serialization.Encoding.PEM), key, name


def _leaf(pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name], *, start: datetime, end: datetime) -> bytes:
    _, ca_key, ca_name = pki
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn="997794E9AGCIEG13221003A"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(0x0705D990)
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_packaged_jlis_roots_load_and_self_verify() -> None:
    trust = TrustStore.jlis()
    generations = {root.generation for root in trust.roots}
    assert generations == {"auth-2015", "auth-2023", "sign-2015", "sign-2023"}
    for root in trust.roots:
        root.certificate.verify_directly_issued_by(root.certificate)


def test_valid_chain_to_extra_root(pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name]) -> None:
    trust = TrustStore.jlis(extra_roots=[pki[0]])
    der = _leaf(pki, start=NOW - timedelta(days=10), end=NOW + timedelta(days=10))
    result = check_certificate(der, trust, now=NOW, clock_synced=True)
    assert result.status is CertStatus.OK
    assert result.issuer_generation == "test"
    assert result.is_auth_certificate
    assert result.validity_verified
    assert "997794" not in repr(result) and "997794" not in str(result.as_dict())


def test_untrusted_without_the_test_root(pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name]) -> None:
    der = _leaf(pki, start=NOW - timedelta(days=10), end=NOW + timedelta(days=10))
    result = check_certificate(der, TrustStore.jlis(), now=NOW, clock_synced=True)
    assert result.status is CertStatus.UNTRUSTED
    assert result.issuer_generation is None


@pytest.mark.parametrize(
    ("start", "end", "status"),
    [
        (NOW - timedelta(days=20), NOW - timedelta(days=1), CertStatus.EXPIRED),
        (NOW + timedelta(days=1), NOW + timedelta(days=20), CertStatus.NOT_YET_VALID),
    ],
)
def test_dates(
    pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name], start: datetime, end: datetime, status: CertStatus
) -> None:
    trust = TrustStore.jlis(extra_roots=[pki[0]])
    result = check_certificate(_leaf(pki, start=start, end=end), trust, now=NOW, clock_synced=False)
    assert result.status is status
    assert not result.clock_synced
    assert not result.validity_verified


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x01", bytes(200), b"\x30\x82\x05\x00" + bytes(20)])
def test_garbage_is_malformed(der: bytes) -> None:
    result = check_certificate(der, TrustStore.jlis(), now=NOW, clock_synced=True)
    assert result.status is CertStatus.MALFORMED


def _root(name: x509.Name, key: rsa.RSAPrivateKey) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_generation_is_found_by_key_not_by_name(pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name]) -> None:
    # Two generations with one DN, as J-LIS has them: only the signature tells them apart.
    pem, _, name = pki
    other = _root(name, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    real = x509.load_pem_x509_certificate(pem)
    der = _leaf(pki, start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))
    for roots in ([Root("gen-a", other), Root("gen-b", real)], [Root("gen-b", real), Root("gen-a", other)]):
        result = check_certificate(der, TrustStore(roots), now=NOW, clock_synced=True)
        assert (result.status, result.issuer_generation) == (CertStatus.OK, "gen-b")
    result = check_certificate(der, TrustStore([Root("gen-a", other)]), now=NOW, clock_synced=True)
    assert (result.status, result.issuer_generation) == (CertStatus.UNTRUSTED, None)


def test_the_ca_certificate_itself_is_not_an_auth_certificate(
    pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name],
) -> None:
    root_der = x509.load_pem_x509_certificate(pki[0]).public_bytes(serialization.Encoding.DER)
    result = check_certificate(root_der, TrustStore.jlis(extra_roots=[pki[0]]), now=NOW, clock_synced=True)
    assert result.status is CertStatus.OK  # it does verify (self-signed) ...
    assert not result.is_auth_certificate  # ... but it is not a card holder's certificate


def test_extra_roots_may_be_der_and_now_may_be_naive(pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name]) -> None:
    root_der = x509.load_pem_x509_certificate(pki[0]).public_bytes(serialization.Encoding.DER)
    der = _leaf(pki, start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))
    naive_now = NOW.replace(tzinfo=None)
    result = check_certificate(der, TrustStore.jlis(extra_roots=[root_der]), now=naive_now, clock_synced=True)
    assert result.status is CertStatus.OK
    assert result.not_before == NOW - timedelta(days=1)
    assert result.as_dict()["not_after"] == (NOW + timedelta(days=1)).isoformat()


@pytest.fixture(scope="module")
def leaf_der(pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name]) -> bytes:
    return _leaf(pki, start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))


@given(st.data())
def test_damaged_certificates_are_data_not_exceptions(
    pki: tuple[bytes, rsa.RSAPrivateKey, x509.Name], leaf_der: bytes, data: st.DataObject
) -> None:
    damaged = bytearray(leaf_der)
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    trust = TrustStore.jlis(extra_roots=[pki[0]])
    for der in (bytes(damaged), bytes(damaged[:cut]), data.draw(st.binary(max_size=64))):
        result = check_certificate(der, trust, now=NOW, clock_synced=True)
        assert isinstance(result.status, CertStatus)
        if result.status is CertStatus.OK:
            assert result.issuer_generation == "test"


def _root_der_with_version(version: int) -> bytes:
    pem = resources.files("mynabox").joinpath("data/jpki-ca/auth_ca_2023.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    at = der.index(b"\xa0\x03\x02\x01\x02")  # TBSCertificate.version [0] INTEGER 2 (v3)
    return der[:at] + b"\xa0\x03\x02\x01" + bytes([version]) + der[at + 5 :]


@pytest.mark.parametrize(
    "root",
    [
        b"",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        _root_der_with_version(18),  # cryptography raises InvalidVersion, not a ValueError (found by fuzzing)
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(_root_der_with_version(18))
        + b"-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "pem-garbage", "der-version-18", "pem-version-18"],
)
def test_a_bad_extra_root_is_a_value_error(root: bytes) -> None:
    with pytest.raises(ValueError, match="trust root is not a PEM or DER certificate"):
        TrustStore.jlis(extra_roots=[root])
