"""Writing a checked bundle onto a card's FAT partition, and generating a device's keys and CSRs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mynabox.adapters.files import write_new
from mynabox.config.model import MqttConfig
from mynabox.fleet.bundle import CREDENTIALS, MANIFEST, Bundle
from mynabox.fleet.fatimage import FatImage
from mynabox.fleet.firstboot import BUNDLE_DIR
from mynabox.payload.envelope import DEVICE_ID_HINT, is_device_id  # the one rule for device ids
from mynabox.payload.keys import AUDIT_KEY_MIN_BYTES, private_key_pem, public_key_pem
from mynabox.record import record


def write_bundle(fat: FatImage, bundle: Bundle) -> None:
    """Replace any bundle on the card: old files wiped first, the manifest last (it marks completeness)."""
    kind = fat.kind(BUNDLE_DIR)
    if kind == "file":
        fat.wipe(BUNDLE_DIR)
    elif kind == "dir":
        fat.wipe_tree(BUNDLE_DIR)  # by clusters: the names on the card may be anything
    fat.mkdir(BUNDLE_DIR)
    fat.mkdir(BUNDLE_DIR / CREDENTIALS)
    for name, data in sorted(bundle.files.items()):
        fat.write(BUNDLE_DIR / PurePosixPath(name), data)
    fat.write(BUNDLE_DIR / MANIFEST, bundle.manifest())


# Every file `generate_keys` writes: all are checked before the first is written.
KEY_FILES = (
    "device-key.pem",
    "device-key.pub.pem",
    "mqtt-client-key.pem",
    "mqtt-client.csr",
    "summary-client-key.pem",
    "summary-client.csr",
    "audit-key",
    "vehicle.toml",
)


@record
class DeviceKeys:
    directory: Path
    device_public: bytes
    csrs: dict[str, bytes]  # "mqtt-client" / "summary-client" -> PEM CSR


def generate_keys(directory: Path, device_id: str) -> DeviceKeys:
    """New P-256 keys (0600, never overwriting), an audit key, CSRs (CN = device id), a vehicle.toml stub.
    All or nothing: every name is checked first, and a write that fails removes what this call wrote."""
    if not is_device_id(device_id):
        raise ValueError(f"{device_id!r}: not a device id ({DEVICE_ID_HINT})")
    _refuse_overwrite(directory, KEY_FILES)
    device = ec.generate_private_key(ec.SECP256R1())
    files: dict[str, tuple[bytes, int]] = {
        "device-key.pem": (private_key_pem(device).reveal(), 0o600),
        "device-key.pub.pem": (public_key_pem(device), 0o644),
    }
    csrs = {}
    for role in ("mqtt-client", "summary-client"):
        key = ec.generate_private_key(ec.SECP256R1())
        csrs[role] = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        files[f"{role}-key.pem"] = (private_key_pem(key).reveal(), 0o600)
        files[f"{role}.csr"] = (csrs[role], 0o644)
    files["audit-key"] = (secrets.token_bytes(max(AUDIT_KEY_MIN_BYTES, 32)), 0o600)
    files["vehicle.toml"] = (_vehicle_stub(device_id).encode(), 0o644)
    assert set(files) == set(KEY_FILES)
    _write_all(directory, files)
    return DeviceKeys(directory, public_key_pem(device), csrs)


def _write_all(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    written: list[Path] = []
    try:
        for name, (data, mode) in files.items():
            write_new(directory / name, data, mode=mode)
            written.append(directory / name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def generate_gateway_keys(directory: Path) -> bytes:
    """The gateway's envelope key pair (P-256): ``gateway-envelope-key.pem`` (PKCS#8, 0600, for the gateway
    only) and ``gateway-envelope.pub.pem`` (SPKI, for every box's vehicle file); returns the public PEM."""
    names = ("gateway-envelope-key.pem", "gateway-envelope.pub.pem")
    _refuse_overwrite(directory, names)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_all(
        directory, {names[0]: (private_key_pem(key).reveal(), 0o600), names[1]: (public_key_pem(key), 0o644)}
    )
    return public_key_pem(key)


def _refuse_overwrite(directory: Path, names: tuple[str, ...]) -> None:
    """Create `directory` if need be; refuse before writing anything if one of `names` is there (write_new
    would refuse it too, but only after the files before it were written)."""
    directory.mkdir(parents=True, exist_ok=True)
    clash = [n for n in names if os.path.lexists(directory / n)]  # a dangling symlink too
    if clash:
        raise FileExistsError(f"{directory}: would overwrite {', '.join(clash)}")


def _vehicle_stub(device_id: str) -> str:
    return f"""# One vehicle's identity for `mynabox provision write`. Paths are relative to this file.
[device]
id = "{device_id}"
# unit_id = "tokyo-12"

[mqtt]
host = "gateway.local"
port = {MqttConfig.port}
ca_file = "mqtt-ca.pem"
client_cert = "mqtt-client.pem"          # issued for mqtt-client.csr
client_key = "mqtt-client-key.pem"

[summary]
url = "https://summary.example.jp/v1"
ca_file = "summary-ca.pem"
client_cert = "summary-client.pem"       # issued for summary-client.csr
client_key = "summary-client-key.pem"

[sealing]
gateway_public_key = "gateway.pem"
device_key = "device-key.pem"            # register device-key.pub.pem with the gateway

[audit]
key = "audit-key"
"""
