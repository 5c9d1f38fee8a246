"""Hostile config and key files, on real files: bounded reads of regular files only, deep nesting, who may
read or replace a key, TLS material parsed and matched. `check-config` runs as a subprocess where a hang is
the failure (FIFOs) and where the exit code and the absence of a traceback are the point."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mynabox.adapters.keyfiles import CREDENTIALS_ENV, save_private_key, save_public_key
from mynabox.config import ConfigError, load_config, parse_config
from mynabox.payload.keys import generate_device_key
from mynabox_testkit.tlsfiles import make_test_pki
from support.boxfiles import VALID, credentials_env, make_box, write_config

EX_CONFIG = 78
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def box(tmp_path: Path) -> Path:
    return make_box(tmp_path)


def issues(path: Path, environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    return [str(i) for i in info.value.issues]


def check_config(
    path: Path | str, environ: dict[str, str], *, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (CREDENTIALS_ENV, "MYNABOX_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "check-config", "--config", str(path)],
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == EX_CONFIG, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


# -- the config file itself -----------------------------------------------------------------------


def test_dev_zero_as_config_is_refused_at_once(box: Path) -> None:
    done = check_config("/dev/zero", credentials_env(box), timeout=30)  # before the fix: read until killed
    assert_refused(done, "<file>: a character device, not a regular file")


def test_fifo_and_directory_as_config_are_refused_without_blocking(box: Path) -> None:
    fifo = box / "config.fifo"
    os.mkfifo(fifo)
    assert_refused(check_config(fifo, credentials_env(box)), "<file>: a FIFO, not a regular file")
    assert_refused(check_config(box, credentials_env(box)), "<file>: a directory, not a regular file")


def test_large_config_is_refused_before_parsing(box: Path) -> None:
    path = box / "config.toml"
    with path.open("wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB the loader must not read
    assert issues(path, credentials_env(box)) == [
        "<file>: too large for a config file (1073741824 bytes, at most 262144)"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b = " * 5000 + "1" + "}" * 5000,
        "[" + ".".join(["a"] * 3000) + "]\nx = 1",
        "device.id = 1\n" + "mqtt." + ".".join(["k"] * 20) + " = 1",
        "x = " + "[" * 9 + "]" * 9,
    ],
    ids=["arrays", "inline-tables", "dotted-table", "dotted-key", "nine-levels"],
)
def test_deeply_nested_toml_is_a_config_error(box: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source=box / "c.toml", environ=credentials_env(box))
    assert [str(i) for i in info.value.issues] == [
        "<toml>: nested more than 8 levels deep (tables or arrays inside each other)"
    ]


def test_deeply_nested_toml_through_check_config(box: Path) -> None:
    path = write_config(box, VALID + "x = " + "[" * 50000 + "]" * 50000 + "\n")
    assert_refused(check_config(path, credentials_env(box)), "<toml>: nested more than 8 levels deep")


# Issue 23 item 5: tomllib's int() refuses more than 4300 digits with a ValueError, and the OS refuses a
# path with NUL with one; both were tracebacks (check-config) and exit 1 (run) before.
HOSTILE_VALUES = {
    "long-integer": (
        VALID.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = ' + "9" * 5000),
        "<toml>: a number too long to convert (more than 4300 digits)",
    ),
    "nul-in-path": (
        VALID.replace('gateway_public_key = "gateway.pem"', 'gateway_public_key = "gate\\u0000way.pem"'),
        "sealing.gateway_public_key: holds a control character (e.g. NUL): not a usable path",
    ),
    "nul-in-url": (
        VALID.replace("https://127.0.0.1:8443/v1", "https://127.0.0.1:8443/v\\u00001"),
        "summary.url: 'https://127.0.0.1:8443/v\\x001' is not allowed — https://host[:port][/prefix]",
    ),
    "nul-in-credentials-dir": (
        'credentials_dir = "creds\\u0000x"\n' + VALID,
        "credentials_dir: holds a control character (e.g. NUL): not a usable path",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_VALUES, ids=list(HOSTILE_VALUES))
@pytest.mark.parametrize("file_checks", [True, False], ids=["file-checks", "no-file-checks"])
def test_a_long_integer_or_a_nul_in_a_path_is_a_config_error(box: Path, case: str, file_checks: bool) -> None:
    text, expected = HOSTILE_VALUES[case]
    env = {} if case == "nul-in-credentials-dir" else credentials_env(box)
    with pytest.raises(ConfigError) as info:
        parse_config(text, source=box / "c.toml", environ=env, check_files=file_checks)
    assert expected in [str(i) for i in info.value.issues]


@pytest.mark.parametrize("case", HOSTILE_VALUES, ids=list(HOSTILE_VALUES))
def test_a_long_integer_or_a_nul_in_a_path_through_check_config(box: Path, case: str) -> None:
    text, expected = HOSTILE_VALUES[case]
    env = {} if case == "nul-in-credentials-dir" else credentials_env(box)
    assert_refused(check_config(write_config(box, text), env), expected)


def test_config_writable_by_others_is_refused(box: Path) -> None:
    path = write_config(box)
    path.chmod(0o666)
    assert issues(path, credentials_env(box)) == ["<file>: mode 0666 lets any user replace it — chmod o-w"]
    path.chmod(0o644)
    box.chmod(0o777)
    found = issues(path, credentials_env(box))
    assert found[0].startswith(f"<file>: its directory {box} (mode 0777) can be written by other users")
    box.chmod(0o1777)  # sticky (like /tmp): others cannot replace a file that is ours
    load_config(path, environ=credentials_env(box))


# -- key files: type, size, permissions -----------------------------------------------------------


def test_fifo_as_key_file_does_not_hang_check_config(box: Path) -> None:
    for name in ("device-key", "mqtt-client-key", "audit-key"):
        (box / "creds" / name).unlink()
        os.mkfifo(box / "creds" / name, 0o600)
    (box / "ca.pem").unlink()
    os.mkfifo(box / "ca.pem")
    done = check_config(write_config(box), credentials_env(box), timeout=30)
    creds = box / "creds"
    assert_refused(
        done,
        f"sealing.device_key: {creds / 'device-key'}: a FIFO, not a regular file",
        f"mqtt.client_key: {creds / 'mqtt-client-key'}: a FIFO, not a regular file",
        f"audit.key: {creds / 'audit-key'}: a FIFO, not a regular file",
        f"summary.ca_file: {box / 'ca.pem'}: a FIFO, not a regular file",
    )


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_devices_named_as_files_are_refused(box: Path, target: str) -> None:
    text = VALID.replace('ca_file = "ca.pem"', f'ca_file = "{target}"', 1)
    assert issues(write_config(box, text), credentials_env(box)) == [
        f"summary.ca_file: {target}: a character device, not a regular file"
    ]


def test_directory_as_key_is_refused(box: Path) -> None:
    key = box / "creds" / "audit-key"
    key.unlink()
    key.mkdir(mode=0o700)
    assert issues(write_config(box), credentials_env(box)) == [
        f"audit.key: {key}: a directory, not a regular file"
    ]


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604, 0o620])
def test_key_files_readable_or_writable_by_others_are_refused(box: Path, mode: int) -> None:
    key = box / "creds" / "device-key"
    key.chmod(mode)
    found = issues(write_config(box), credentials_env(box))
    verb = "write" if mode & 0o022 else "read"
    assert found == [
        f"sealing.device_key: {key}: mode {mode:04o} lets other users {verb} it — chmod 600 (systemd's "
        "LoadCredential= gives the service a 0400 copy; the root-owned store is 0600)"
    ]


def test_what_load_credential_hands_the_service_is_accepted(box: Path) -> None:
    """systemd's credentials directory: 0500, files 0400, owned by the service's user."""
    creds = box / "creds"
    for key in creds.iterdir():
        key.chmod(0o400)
    creds.chmod(0o500)
    try:
        load_config(write_config(box), environ=credentials_env(box))
    finally:
        creds.chmod(0o700)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o733])
def test_credentials_directory_writable_by_others_is_refused(box: Path, mode: int) -> None:
    creds = box / "creds"
    creds.chmod(mode)
    found = issues(write_config(box), credentials_env(box))
    assert len(found) == 4  # each credential, so the message names the key that is at risk
    assert all(
        f"credentials directory {creds} (mode {mode:04o}) can be written by other users" in f for f in found
    )
    assert found[-1].startswith(f"audit.key: {creds / 'audit-key'}: credentials directory")


def test_symlinked_key_is_refused_but_a_symlinked_certificate_is_not(box: Path) -> None:
    key = box / "creds" / "device-key"
    real = box / "creds" / "device-key.real"
    key.rename(real)
    key.symlink_to(real)
    (box / "ca.pem").rename(box / "ca-real.pem")
    (box / "ca.pem").symlink_to(box / "ca-real.pem")
    assert issues(write_config(box), credentials_env(box)) == [
        f"sealing.device_key: {key}: a symbolic link — a key must be the file itself (a link can be pointed "
        "anywhere; LoadCredential= copies files)"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_files_owned_by_another_user_are_refused(box: Path) -> None:
    key = box / "creds" / "audit-key"
    os.chown(key, 65534, -1)
    os.chown(box / "gateway.pem", 65534, -1)  # public, but its owner could swap the gateway's key
    assert issues(write_config(box), credentials_env(box)) == [
        f"sealing.gateway_public_key: {box / 'gateway.pem'}: owned by uid 65534, who could replace it "
        "(neither root nor this user, uid 0)",
        f"audit.key: {key}: owned by uid 65534, neither root nor this user (uid 0)",
    ]
    os.chown(write_config(box), 65534, -1)
    assert issues(box / "config.toml", credentials_env(box)) == [
        "<file>: owned by uid 65534, who could replace it (neither root nor this user, uid 0)"
    ]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_check_config_as_another_user_on_roots_credential_store() -> None:
    """Fleet ops running check-config as an ordinary user against the root-owned 0700 store: each credential
    is named with what to do, not a bare EACCES; the public files are still checked."""
    # Not mkdtemp: its random suffix (e.g. 'fv5z9uc8') can look like key material, and a path that might hold
    # some is rightly not shown, which made this test fail about once in twenty runs.
    root = Path(tempfile.gettempdir()) / f"mynabox-store-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    try:
        root.chmod(0o755)
        make_box(root)
        path = write_config(root)
        env = {k: v for k, v in os.environ.items() if k not in (CREDENTIALS_ENV, "MYNABOX_CONFIG")}
        done = subprocess.run(
            [*AS_NOBODY, sys.executable, "-m", "mynabox.cli", "check-config", "--config", str(path)],
            env={**env, "MYNABOX_CREDENTIALS_DIR": str(root / "creds")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert_refused(
            done,
            f"audit.key: {root / 'creds' / 'audit-key'}: cannot read (Permission denied) — check as root",
        )
        assert done.stderr.count("Permission denied") == 4, done.stderr  # the four credentials, nothing else
    finally:
        shutil.rmtree(root)


def test_permission_problems_through_check_config(box: Path) -> None:
    (box / "creds" / "mqtt-client-key").chmod(0o644)
    (box / "creds").chmod(0o777)
    done = check_config(write_config(box), credentials_env(box))
    assert_refused(done, "mqtt.client_key:", "mode 0644 lets other users read it — chmod 600")


# -- TLS material and envelope keys ---------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _put(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def test_garbage_tls_material_is_refused(box: Path) -> None:
    creds = box / "creds"
    (box / "summary-ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    (box / "mqtt-ca.pem").write_bytes(b"")
    shutil.copyfile(creds / "device-key", box / "not-a-cert.pem")  # a key where a certificate belongs
    (box / "not-a-cert.pem").chmod(0o600)
    _put(creds / "summary-client-key", b"\x00" * 300, 0o600)
    text = (
        VALID.replace('ca_file = "ca.pem"', 'ca_file = "summary-ca.pem"', 1)
        .replace('ca_file = "ca.pem"', 'ca_file = "mqtt-ca.pem"', 1)
        .replace('client_cert = "client.pem"', 'client_cert = "not-a-cert.pem"', 1)
    )
    pem = "in PEM (-----BEGIN CERTIFICATE-----)"
    assert issues(write_config(box, text), credentials_env(box)) == [
        f"summary.ca_file: {box / 'summary-ca.pem'}: not a CA certificate bundle {pem}",
        f"summary.client_cert: {box / 'not-a-cert.pem'}: not a certificate {pem}",
        f"summary.client_key: {creds / 'summary-client-key'}: not an unencrypted PEM private key",
        f"mqtt.ca_file: {box / 'mqtt-ca.pem'}: not a CA certificate bundle {pem}",
    ]


def test_huge_tls_files_are_refused_without_reading_them(box: Path) -> None:
    for path in (box / "ca.pem", box / "client.pem", box / "creds" / "mqtt-client-key"):
        with path.open("r+b") as f:
            f.truncate(1 << 30)  # sparse 1 GiB
    found = issues(write_config(box), credentials_env(box))
    # The sizes come from fstat, before any read: none of the 1 GiB is read.
    gib = "1073741824 bytes"
    assert (
        f"summary.ca_file: {box / 'ca.pem'}: too large for a CA certificate bundle ({gib}, at most 1048576)"
        in found
    )
    assert (
        f"mqtt.client_cert: {box / 'client.pem'}: too large for a certificate ({gib}, at most 65536)" in found
    )
    assert any(f.startswith("mqtt.client_key:") and "too large for a TLS private key" in f for f in found)


def test_tls_key_must_match_its_certificate(box: Path, tmp_path: Path) -> None:
    other = make_test_pki(tmp_path / "other", clients=("amb-8",))
    shutil.copyfile(other.client("amb-8").key, box / "creds" / "mqtt-client-key")
    found = issues(write_config(box), credentials_env(box))
    creds = box / "creds"
    assert found == [
        f"mqtt.client_key: {creds / 'mqtt-client-key'}: does not match the certificate {box / 'client.pem'}"
    ]


def test_tls_key_types(box: Path) -> None:
    creds = box / "creds"
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _put(creds / "mqtt-client-key", _pem_key(weak), 0o600)
    _put(creds / "summary-client-key", _pem_key(generate_device_key(), password=b"pw"), 0o600)
    found = issues(write_config(box), credentials_env(box))
    assert found == [
        f"summary.client_key: {creds / 'summary-client-key'}: not an unencrypted PEM private key",
        f"mqtt.client_key: {creds / 'mqtt-client-key'}: key is not EC P-256/P-384 or RSA ≥ 2048 bits",
    ]


def test_envelope_keys_are_p256_and_not_the_boxs_own(box: Path) -> None:
    creds = box / "creds"
    device = generate_device_key()
    save_private_key(creds / "device-key", device)
    save_public_key(box / "gateway.pem", device)  # misprovisioned: sealed to itself, the gateway cannot open
    assert issues(write_config(box), credentials_env(box)) == [
        f"sealing.gateway_public_key: {box / 'gateway.pem'}: is this box's own device key, not the gateway's"
    ]
    _put(creds / "device-key", _pem_key(ec.generate_private_key(ec.SECP384R1())), 0o600)
    assert issues(write_config(box), credentials_env(box)) == [
        f"sealing.device_key: {creds / 'device-key'}: not an EC P-256 private key"
    ]


def test_garbage_tls_material_through_check_config(box: Path) -> None:
    (box / "ca.pem").write_bytes(b"garbage")
    done = check_config(write_config(box), credentials_env(box))
    assert_refused(done, "summary.ca_file:", "not a CA certificate bundle in PEM")


def test_tls_material_openssl_refuses_is_refused_by_the_check(box: Path) -> None:
    """A chain certificate with a 1024-bit RSA key after the client certificate: every file parses, but
    OpenSSL (security level 2) will not load the chain, so the daemon could not start. The check builds
    the TLS contexts as the daemon does."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak intermediate")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(weak.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(weak, hashes.SHA256())
    )
    with (box / "client.pem").open("ab") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    assert issues(write_config(box), credentials_env(box)) == [
        "mqtt: OpenSSL refuses its TLS files (ca_file, client_cert, client_key): CA_KEY_TOO_SMALL",
        "summary: OpenSSL refuses its TLS files (ca_file, client_cert, client_key): CA_KEY_TOO_SMALL",
    ]
