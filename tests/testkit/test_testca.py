"""The test CA the box trusts in test mode is the one that signs the virtual card's hierarchy."""

from __future__ import annotations

from importlib import resources

from cryptography import x509

from mynabox.card.certcheck import CertStatus, TrustStore, check_certificate
from mynabox_testkit import testca


def test_committed_test_root_is_the_virtual_cards_root() -> None:
    # data/jpki-test-ca.pem is a copy (the box loads it without the test keys); regenerate it from
    # testca.test_ca_pem() if the test hierarchy ever changes.
    committed = resources.files("mynabox").joinpath("data/jpki-test-ca.pem").read_bytes()
    assert committed == testca.test_ca_pem()


def test_test_root_only_when_asked() -> None:
    der = testca.auth_certificate("card-under-test")
    now = x509.load_der_x509_certificate(der).not_valid_before_utc
    trusted = check_certificate(der, TrustStore.jlis(test_root=True), now=now, clock_synced=True)
    assert (trusted.status, trusted.issuer_generation) == (CertStatus.OK, "test")
    plain = check_certificate(der, TrustStore.jlis(), now=now, clock_synced=True)
    assert plain.status is CertStatus.UNTRUSTED
