"""A box's config directory on disk with real identity files (a test PKI): what provisioning leaves on a box,
for the config, check-config and daemon-start tests to spoil one file at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

from mynabox.adapters.keyfiles import CREDENTIALS_ENV, save_private_key, save_public_key
from mynabox.payload.keys import generate_device_key
from mynabox_testkit.tlsfiles import make_test_pki

AUDIT_BYTES = b"audit-key-bytes-THAT-MUST-NOT-LEAK-0123456789abcdef"

VALID = """
[device]
id = "amb-7"
[summary]
url = "https://127.0.0.1:8443/v1"
ca_file = "ca.pem"
client_cert = "client.pem"
client_key = "summary-client-key"
[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
client_cert = "client.pem"
client_key = "mqtt-client-key"
[sealing]
device_key = "device-key"
gateway_public_key = "gateway.pem"
[audit]
key = "audit-key"
"""

# What `mynabox run` needs besides: no hardware (dummy OLED, mock pins), state in the test's directory.
DAEMON_EXTRA = """
[display]
driver = "dummy"
[panel]
pin_factory = "mock"
[storage]
state_dir = "state"
"""


def make_box(root: Path) -> Path:
    """`root` gets ca.pem, client.pem (its key in creds/ as both TLS client keys), gateway.pem, and creds/
    (0700) with the device, TLS and audit keys at 0600: what provisioning leaves on a box."""
    creds = root / "creds"
    creds.mkdir(mode=0o700)
    pki = make_test_pki(root / "pki", clients=("amb-7",))
    save_private_key(creds / "device-key", generate_device_key())
    for name in ("mqtt-client-key", "summary-client-key"):
        shutil.copyfile(pki.client("amb-7").key, creds / name)
        (creds / name).chmod(0o600)
    (creds / "audit-key").write_bytes(AUDIT_BYTES)
    (creds / "audit-key").chmod(0o600)
    save_public_key(root / "gateway.pem", generate_device_key())
    shutil.copyfile(pki.ca_cert, root / "ca.pem")
    shutil.copyfile(pki.client("amb-7").cert, root / "client.pem")
    return root


def write_config(root: Path, text: str = VALID) -> Path:
    path = root / "config.toml"
    path.write_text(text)
    return path


def credentials_env(root: Path) -> dict[str, str]:
    return {CREDENTIALS_ENV: str(root / "creds")}
