"""Key files on disk: round trips, credentials directory, refusals that never quote the file."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from mynabox.adapters import keyfiles
from mynabox.payload import keys
from mynabox.payload.keys import KeyFileError


def test_private_key_round_trip_with_private_mode(tmp_path: Path) -> None:
    key = keys.generate_device_key()
    path = tmp_path / "device.key"
    keyfiles.save_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    loaded = keyfiles.load_private_key(path)
    assert loaded.private_numbers() == key.private_numbers()
    assert not list(tmp_path.glob(".*tmp"))


def test_sec1_private_key_is_read(tmp_path: Path) -> None:
    key = keys.generate_device_key()
    path = tmp_path / "sec1.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    assert keyfiles.load_private_key(path).private_numbers() == key.private_numbers()


def test_public_key_and_certificate(tmp_path: Path) -> None:
    key = keys.generate_device_key()
    keyfiles.save_public_key(tmp_path / "amb-01.pem", key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amb-02")])
    now = dt.datetime.now(dt.UTC)
    other = keys.generate_device_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(other.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(other, hashes.SHA256())
    )
    (tmp_path / "amb-02.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "notes.txt").write_text("ignored")
    found = keyfiles.load_public_keys(tmp_path)
    assert sorted(found) == ["amb-01", "amb-02"]
    assert found["amb-01"].public_numbers() == key.public_key().public_numbers()
    assert found["amb-02"].public_numbers() == other.public_key().public_numbers()


def test_credentials_directory(tmp_path: Path) -> None:
    key = keys.generate_device_key()
    keyfiles.save_private_key(tmp_path / "device-key", key)
    env = {keyfiles.CREDENTIALS_ENV: str(tmp_path)}
    assert keyfiles.credential_path("device-key", env) == tmp_path / "device-key"
    assert keyfiles.load_private_key_credential("device-key", env).private_numbers() == key.private_numbers()
    with pytest.raises(KeyFileError, match="LoadCredential"):
        keyfiles.credential_path("device-key", {})
    with pytest.raises(KeyFileError):
        keyfiles.credential_path("../etc/shadow", env)


def _pem(private: object) -> bytes:
    return private.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"SECRET-MATERIAL-1234 not a key",
        _pem(ec.generate_private_key(ec.SECP384R1())),
        _pem(ed25519.Ed25519PrivateKey.generate()),
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        ),
        b"A" * (70 * 1024),
    ],
    ids=["empty", "garbage", "p384", "ed25519", "encrypted", "huge"],
)
def test_bad_private_keys_are_refused_without_quoting(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "device.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        keyfiles.load_private_key(path)
    assert str(path) in str(info.value)
    assert "SECRET" not in str(info.value) and "BEGIN" not in str(info.value)


def test_bad_public_keys_and_missing_files(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    path = tmp_path / "gw.pem"
    path.write_bytes(
        p384.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError, match="P-256"):
        keyfiles.load_public_key(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        keyfiles.load_public_key(tmp_path / "missing.pem")
    with pytest.raises(KeyFileError, match="not a directory"):
        keyfiles.load_public_keys(tmp_path / "nowhere")
    with pytest.raises(KeyFileError, match="cannot write"):
        keyfiles.save_private_key(tmp_path / "no" / "such" / "dir.key", keys.generate_device_key())


def test_audit_key(tmp_path: Path) -> None:
    path = tmp_path / "audit-key"
    path.write_bytes(b"\x01" * 32)
    assert keyfiles.load_audit_key(path).reveal() == b"\x01" * 32
    path.write_bytes(b"short")
    with pytest.raises(KeyFileError, match="at least 32"):
        keyfiles.load_audit_key(path)


def test_only_regular_files_are_read_and_never_block(tmp_path: Path) -> None:
    fifo = tmp_path / "device.key"
    os.mkfifo(fifo)  # no writer: an ordinary open() would wait forever
    with pytest.raises(KeyFileError, match="a FIFO, not a regular file"):
        keyfiles.load_private_key(fifo)
    with pytest.raises(KeyFileError, match="a character device, not a regular file"):
        keyfiles.load_public_key(Path("/dev/zero"))
    with pytest.raises(KeyFileError, match="a directory, not a regular file"):
        keyfiles.load_audit_key(tmp_path)
    big = tmp_path / "big.key"
    with big.open("wb") as f:
        f.truncate(1 << 30)
    with pytest.raises(KeyFileError, match=r"too large for a key file \(1073741824 bytes, at most 65536\)"):
        keyfiles.load_private_key(big)


def test_a_symlink_is_refused_when_asked(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    keyfiles.save_private_key(real, keys.generate_device_key())
    link = tmp_path / "link.key"
    link.symlink_to(real)
    assert keyfiles.read_small_file(link) == real.read_bytes()
    with pytest.raises(KeyFileError, match="a symbolic link, not a regular file"):
        keyfiles.read_small_file(link, follow_symlinks=False)
