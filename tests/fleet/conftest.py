"""Fleet ops fixtures: one vehicle's real keys and certificates, and small FAT images made with mkfs.vfat."""

from __future__ import annotations

import secrets
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.keyfiles import save_public_key
from mynabox_testkit.tlsfiles import make_test_pki

DEVICE_ID = "amb-0001"
FAT_START_SECTOR = 2048


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/install-deps.sh installs it)")


@dataclass(frozen=True)
class Vehicle:
    dir: Path
    file: Path
    secrets: dict[str, bytes]  # credential name -> the secret file's bytes

    def write(self, text: str) -> Path:
        self.file.write_text(text)
        return self.file


def vehicle_text(**override: str) -> str:
    fields = {
        "id": f'"{DEVICE_ID}"',
        "unit_id": '"tokyo-12"',
        "mqtt_client_key": '"mqtt/client-amb-0001.key"',
        "summary_client_key": '"summary/client-amb-0001.key"',
        "extra": "",
    }
    fields.update(override)
    return f"""
[device]
id = {fields["id"]}
unit_id = {fields["unit_id"]}
{fields["extra"]}
[mqtt]
host = "gateway.local"
port = 8883
ca_file = "mqtt/ca.pem"
client_cert = "mqtt/client-amb-0001.pem"
client_key = {fields["mqtt_client_key"]}

[summary]
url = "https://summary.example.jp/v1"
ca_file = "summary/ca.pem"
client_cert = "summary/client-amb-0001.pem"
client_key = {fields["summary_client_key"]}

[sealing]
gateway_public_key = "gateway.pem"
device_key = "device-key.pem"

[audit]
key = "audit-key"
"""


@pytest.fixture
def vehicle(tmp_path: Path) -> Vehicle:
    d = tmp_path / "vehicle"
    make_test_pki(d / "mqtt", clients=(DEVICE_ID,))
    make_test_pki(d / "summary", clients=(DEVICE_ID,))
    save_public_key(d / "gateway.pem", ec.generate_private_key(ec.SECP256R1()))
    from mynabox.adapters.keyfiles import save_private_key

    save_private_key(d / "device-key.pem", ec.generate_private_key(ec.SECP256R1()))
    (d / "audit-key").write_bytes(secrets.token_bytes(32))
    v = Vehicle(
        d,
        d / "vehicle.toml",
        {
            "device-key": (d / "device-key.pem").read_bytes(),
            "mqtt-client-key": (d / "mqtt" / f"client-{DEVICE_ID}.key").read_bytes(),
            "summary-client-key": (d / "summary" / f"client-{DEVICE_ID}.key").read_bytes(),
            "audit-key": (d / "audit-key").read_bytes(),
        },
    )
    v.write(vehicle_text())
    return v


def make_card(path: Path, *, size_mib: int = 24) -> Path:
    """A card image: an MBR whose partition 1 is a FAT file system made by mkfs.vfat at sector 2048."""
    need("mkfs.vfat")
    need("mcopy")
    sectors = size_mib * 2048 - FAT_START_SECTOR
    with path.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
        entry = struct.pack("<B3sB3sII", 0x80, b"\0\0\0", 0x0C, b"\0\0\0", FAT_START_SECTOR, sectors)
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")
    subprocess.run(
        ["mkfs.vfat", "-n", "MYNA-BOOT", "--offset", str(FAT_START_SECTOR), str(path), str(sectors // 2)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def card(tmp_path: Path) -> Path:
    return make_card(tmp_path / "card.img")


def fragments(secret: bytes) -> list[bytes]:
    """Pieces of a secret that identify it: 16-char windows of a PEM body past the ASN.1 header that every
    P-256 PKCS#8 key shares (48 base64 chars), within its lines; for raw secrets, 16-byte windows."""
    if secret.startswith(b"-----BEGIN"):
        lines = secret.splitlines()[1:-1]
        body = b"".join(lines)
        pieces = [body[i : i + 16] for i in range(48, len(body) - 16, 8)]
        return [p for p in pieces if any(p in line for line in lines)]
    return [secret[i : i + 16] for i in range(0, len(secret) - 15, 8)]


def leaked(raw: bytes, secret: bytes) -> list[bytes]:
    return [p for p in fragments(secret) if p in raw]
