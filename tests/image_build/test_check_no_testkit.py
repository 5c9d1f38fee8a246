"""image-build/lib/check-no-testkit.py: the image's root must hold no file of the test kit and no private key.
Every kind of key file is made here with cryptography and put in a small tree; certificates, public keys
and compiled code that quotes a key (libgnutls does) pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mynabox_testkit import testca

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "image-build" / "lib" / "check-no-testkit.py"
KIT = REPO / "testkit" / "mynabox_testkit"
ENC = serialization.Encoding
FMT = serialization.PrivateFormat
NONE = serialization.NoEncryption()


def run(tree: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(tree), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def put(tree: Path, rel: str, data: bytes) -> None:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def clean_tree(tree: Path) -> None:
    """What an image legitimately holds: certificates, public keys, code, a library quoting a PEM key."""
    cert = x509.load_pem_x509_certificate(testca.test_ca_pem())
    put(tree, "opt/mynabox/venv/lib/mynabox/data/jpki-test-ca.pem", testca.test_ca_pem())
    put(tree, "usr/share/ca/ca.der", cert.public_bytes(ENC.DER))
    pub = cert.public_key().public_bytes(ENC.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    put(tree, "etc/mynabox/pub.der", pub)
    put(tree, "opt/mynabox/venv/lib/mynabox/cli.py", b"print('PRIVATE KEY')\n")
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ENC.PEM, FMT.PKCS8, serialization.NoEncryption()
    )
    put(tree, "usr/lib/aarch64-linux-gnu/libgnutls.so.30", b"\x7fELF\x02\x01\x01" + b"\x00" * 64 + key)
    (tree / "etc/ssl/private").mkdir(parents=True)


def test_a_clean_root_passes(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr


def test_every_kind_of_private_key_is_named(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    clean_tree(tmp_path)
    none = NONE
    secret = serialization.BestAvailableEncryption(b"pw")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = {
        "etc/a.pem": rsa_key.private_bytes(ENC.PEM, FMT.TraditionalOpenSSL, none),
        "etc/b.crt": rsa_key.private_bytes(ENC.PEM, FMT.PKCS8, secret),
        "etc/c.txt": b"key:\n" + ec_key.private_bytes(ENC.PEM, FMT.OpenSSH, none),
        "etc/d.bin": rsa_key.private_bytes(ENC.DER, FMT.PKCS8, none),
        "etc/e.bin": rsa_key.private_bytes(ENC.DER, FMT.TraditionalOpenSSL, none),
        "etc/f.bin": ec_key.private_bytes(ENC.DER, FMT.TraditionalOpenSSL, none),
        "etc/g.bin": ec_key.private_bytes(ENC.DER, FMT.PKCS8, secret),
        "etc/h.bin": pkcs12.serialize_key_and_certificates(b"x", ec_key, None, None, secret),
        "etc/ssh/ssh_host_ed25519_key": b"not parsed: the name is enough",
        "etc/mynabox/box.key": b"",
    }
    for rel, data in keys.items():
        put(tmp_path, rel, data)
    done = run(tmp_path)
    assert done.returncode == 1
    named = {line.split(": ")[1] for line in done.stderr.splitlines() if " such paths " not in line}
    assert named == set(keys), done.stderr
    assert f"check-no-testkit: {len(keys)} such paths" in done.stderr


def test_the_bench_image_may_carry_ssh_host_keys_only(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    put(tmp_path, "etc/ssh/ssh_host_ed25519_key", b"-")
    assert run(tmp_path, "--bench-ssh", "1").returncode == 0
    put(tmp_path, "root/.ssh/id_ed25519.key", b"-")
    done = run(tmp_path, "--bench-ssh", "1")
    assert done.returncode == 1
    assert "root/.ssh/id_ed25519.key: named like a key file" in done.stderr
    assert "ssh_host" not in done.stderr


def test_the_test_kit_is_found_by_path_and_by_its_bytes(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    site = "opt/mynabox/venv/lib/python3.13/site-packages"
    put(tmp_path, f"{site}/mynabox_testkit/vpcd.py", (KIT / "vpcd.py").read_bytes())
    put(tmp_path, f"{site}/mynabox_testkit-0.1.0.dist-info/RECORD", b"")
    (tmp_path / site / "mynabox" / "testing").mkdir(parents=True)  # the old layout, even empty
    put(tmp_path, "usr/share/demo/patients.py", (KIT / "patients.py").read_bytes())
    done = run(tmp_path)
    assert done.returncode == 1
    assert f"{site}/mynabox_testkit: the test kit" in done.stderr
    assert f"{site}/mynabox_testkit-0.1.0.dist-info: the test kit" in done.stderr
    assert f"{site}/mynabox/testing: the test kit" in done.stderr
    assert "usr/share/demo/patients.py: a copy of the test kit's mynabox_testkit/patients.py" in done.stderr


def test_the_kits_keys_are_named_wherever_they_lie(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    shutil.copy(KIT / "data" / "test-ca-auth.pem", tmp_path / "etc" / "trusted.pem")
    done = run(tmp_path)
    assert done.returncode == 1
    assert "etc/trusted.pem: a copy of the test kit's mynabox_testkit/data/test-ca-auth.pem" in done.stderr


def test_usage_errors(tmp_path: Path) -> None:
    assert run(tmp_path / "absent").returncode == 2
    assert run(tmp_path, "--kit", str(tmp_path / "absent")).returncode == 2
