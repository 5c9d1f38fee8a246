"""The one client TLS context: our CA only, the server's name checked, a client certificate, TLS 1.2+;
unusable files end in TlsFilesError naming which part failed."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mynabox.tls import TlsFilesError, client_context
from mynabox_testkit.tlsfiles import TestPki, make_test_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def test_the_settings_every_client_shares(pki: TestPki) -> None:
    files = pki.client("device-1")
    ctx = client_context(pki.ca_cert, files.cert, files.key)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    trusted = [dict(rdn[0] for rdn in c["subject"])["commonName"] for c in ctx.get_ca_certs()]
    assert trusted == ["mynabox test CA"]  # our CA, no system store
    assert ctx.keylog_filename is None


def test_a_subclass_and_a_higher_minimum(pki: TestPki) -> None:
    class Mine(ssl.SSLContext):
        pass

    files = pki.client("device-1")
    tls13 = ssl.TLSVersion.TLSv1_3
    ctx = client_context(pki.ca_cert, files.cert, files.key, minimum=tls13, context_class=Mine)
    assert isinstance(ctx, Mine) and ctx.minimum_version == tls13


def test_unusable_files_name_the_part(pki: TestPki, tmp_path: Path) -> None:
    files = pki.client("device-1")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        ((tmp_path / "missing.pem", files.cert, files.key), "ca", FileNotFoundError),
        ((garbage, files.cert, files.key), "ca", ssl.SSLError),
        ((pki.ca_cert, files.cert, pki.server_key), "cert", ssl.SSLError),  # key of another certificate
        ((pki.ca_cert, files.cert, Path("nul\0.key")), "cert", ValueError),
    ]
    for (ca, cert, key), part, cause in cases:
        with pytest.raises(TlsFilesError) as info:
            client_context(ca, cert, key)
        assert info.value.part == part and isinstance(info.value.cause, cause)
        assert info.value.__cause__ is info.value.cause
