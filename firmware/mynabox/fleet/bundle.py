"""One vehicle's identity: read from fleet ops' vehicle file, checked, laid out as the provisioning bundle.

The vehicle file (TOML) names the device, the broker and the summary service, and points at PEM/key files
(relative to the vehicle file). The bundle is the files the box needs, under fixed names: a `config.toml`
that references them by relative path and credential name, the certificates, and `credentials/*` (the
secrets, handed to the daemon by `LoadCredential=`). `bundle.json`, written last, lists every file's SHA-256:
a bundle without a valid one is incomplete.

Every check runs before anything is written. The firmware's own config loader validates the generated
config (device id, URL, host, ports, key types), so its rules stay the single source; on top of that the
keys must be P-256 and match their certificates.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.keyfiles import read_small_file
from mynabox.config import ConfigError, parse_config
from mynabox.config.fields import CONTROL_IN_PATH, has_control, suggest
from mynabox.config.model import MqttConfig
from mynabox.payload.keys import KeyFileError, parse_private_key, parse_public_key
from mynabox.record import record

MANIFEST = "bundle.json"
BUNDLE_VERSION = 1
CONFIG = "config.toml"
CREDENTIALS = "credentials"
# credential name -> (vehicle section, key). The unit's LoadCredential= lines use these names.
SECRETS = {
    "device-key": ("sealing", "device_key"),
    "mqtt-client-key": ("mqtt", "client_key"),
    "summary-client-key": ("summary", "client_key"),
    "audit-key": ("audit", "key"),
}
# bundle file -> (vehicle section, key): certificates and public keys.
PUBLIC = {
    "mqtt-ca.pem": ("mqtt", "ca_file"),
    "mqtt-client.pem": ("mqtt", "client_cert"),
    "summary-ca.pem": ("summary", "ca_file"),
    "summary-client.pem": ("summary", "client_cert"),
    "gateway.pem": ("sealing", "gateway_public_key"),
}
_FIELDS: dict[str, dict[str, type]] = {
    "device": {"id": str, "unit_id": str},
    "mqtt": {"host": str, "port": int, "ca_file": str, "client_cert": str, "client_key": str},
    "summary": {"url": str, "ca_file": str, "client_cert": str, "client_key": str},
    "sealing": {"gateway_public_key": str, "device_key": str},
    "audit": {"key": str},
    # Bench and emulated boxes only (no OLED, no GPIO): e.g. driver = "dummy", pin_factory = "mock".
    "display": {"driver": str},
    "panel": {"pin_factory": str},
}
_OPTIONAL = {("device", "unit_id"), ("mqtt", "port"), ("display", "driver"), ("panel", "pin_factory")}


class BundleError(Exception):
    """The vehicle's identity is refused; `problems` says every reason (never a key's bytes)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


@record
class Bundle:
    files: Mapping[str, bytes]  # relative POSIX path -> content, bundle.json excluded

    @property
    def digests(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.digests, sort_keys=True).encode()).hexdigest()[:32]

    def manifest(self) -> bytes:
        doc = {"version": BUNDLE_VERSION, "id": self.id, "files": self.digests}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @staticmethod
    def is_secret(name: str) -> bool:
        return PurePosixPath(name).parts[0] == CREDENTIALS


def parse_manifest(data: bytes) -> tuple[str, dict[str, str]]:
    """(bundle id, {file: sha256}) from bundle.json, or BundleError when it is not a complete manifest."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError([f"{MANIFEST}: not JSON ({type(err).__name__})"]) from None
    except RecursionError:
        raise BundleError([f"{MANIFEST}: nested too deep"]) from None
    except ValueError:  # int() of more digits than Python converts
        raise BundleError([f"{MANIFEST}: a number too long to convert"]) from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != BUNDLE_VERSION
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        or set(files) != expected_files()
    ):
        raise BundleError([f"{MANIFEST}: not a version {BUNDLE_VERSION} manifest of the expected files"])
    digests = {str(k): str(v) for k, v in files.items()}
    bundle_id = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:32]
    if doc.get("id") != bundle_id:
        raise BundleError([f"{MANIFEST}: id does not match its file list"])
    return bundle_id, digests


def expected_files() -> set[str]:
    return {CONFIG, *PUBLIC, *(f"{CREDENTIALS}/{name}" for name in SECRETS)}


def load_vehicle(path: Path) -> Bundle:
    """The bundle for the vehicle file at `path`, or BundleError listing every problem."""
    try:
        doc = tomllib.loads(read_small_file(path, what="a vehicle file").decode("utf-8"))
    except KeyFileError as err:
        raise BundleError([str(err)]) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BundleError([f"{path}: not a TOML file ({err})"]) from None
    except RecursionError:
        raise BundleError([f"{path}: nested too deep (tables or arrays inside each other)"]) from None
    except ValueError:  # tomllib's int() of more digits than Python converts
        raise BundleError([f"{path}: a number too long to convert (more than 4300 digits)"]) from None
    return build_bundle(doc, base=path.parent)


def build_bundle(doc: Mapping[str, object], *, base: Path) -> Bundle:
    problems: list[str] = []
    values = _fields(doc, problems)
    files: dict[str, bytes] = {}
    for name, (section, key) in {**PUBLIC, **{f"{CREDENTIALS}/{n}": v for n, v in SECRETS.items()}}.items():
        ref = values.get((section, key))
        if isinstance(ref, str) and has_control(ref):
            problems.append(f"{section}.{key}: {CONTROL_IN_PATH}")
        elif isinstance(ref, str):
            try:
                files[name] = read_small_file(base / ref, what=f"{section}.{key}")
            except KeyFileError as err:
                problems.append(f"{section}.{key}: {err}")
    if problems:
        raise BundleError(problems)
    _check_keys(files, problems)
    files[CONFIG] = _config_text(values).encode()
    if not problems:
        _check_with_firmware(files, problems)
    if problems:
        raise BundleError(problems)
    return Bundle(files)


def _fields(doc: Mapping[str, object], problems: list[str]) -> dict[tuple[str, str], object]:
    values: dict[tuple[str, str], object] = {}
    seen: set[tuple[str, str]] = set()
    for section, table in doc.items():
        if section not in _FIELDS:
            problems.append(f"{section}: unknown section ({suggest(section, list(_FIELDS))})")
            continue
        if not isinstance(table, dict):
            problems.append(f"{section}: expected a table")
            continue
        for key, value in table.items():
            seen.add((section, key))
            kind = _FIELDS[section].get(key)
            if kind is None:
                problems.append(f"{section}.{key}: unknown field ({suggest(key, list(_FIELDS[section]))})")
            elif type(value) is not kind:
                problems.append(f"{section}.{key}: expected {'an integer' if kind is int else 'a string'}")
            else:
                values[(section, key)] = value
    for section, keys in _FIELDS.items():
        for key in keys:
            if (section, key) not in seen and (section, key) not in _OPTIONAL:
                problems.append(f"{section}.{key}: missing (required)")
    return values


def _check_keys(files: Mapping[str, bytes], problems: list[str]) -> None:
    for name in ("mqtt-ca.pem", "summary-ca.pem"):
        try:
            x509.load_pem_x509_certificates(files[name])
        except ValueError:
            problems.append(f"{name}: not a PEM certificate")
    try:
        parse_public_key(files["gateway.pem"], source="sealing.gateway_public_key")
    except KeyFileError as err:
        problems.append(str(err))
    for cert_name, key_name in (
        ("mqtt-client.pem", "mqtt-client-key"),
        ("summary-client.pem", "summary-client-key"),
    ):
        section = cert_name.split("-")[0]
        key = _private_key(files[f"{CREDENTIALS}/{key_name}"], f"{section}.client_key", problems)
        try:
            cert = x509.load_pem_x509_certificate(files[cert_name])
        except ValueError:
            problems.append(f"{section}.client_cert: not a PEM certificate")
            continue
        if key is not None and _spki(cert.public_key()) != _spki(key.public_key()):
            problems.append(f"{section}.client_key: does not match the certificate {section}.client_cert")
    _private_key(files[f"{CREDENTIALS}/device-key"], "sealing.device_key", problems)


def _private_key(data: bytes, source: str, problems: list[str]) -> ec.EllipticCurvePrivateKey | None:
    try:
        return parse_private_key(data, source=source)
    except KeyFileError as err:
        problems.append(str(err))
        return None


def _spki(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return b"not-ec"
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _toml(value: object) -> str:
    return str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


def _config_text(values: Mapping[tuple[str, str], object]) -> str:
    """The box's config.toml: vehicle values, fixed file names, the firmware's defaults for the rest."""
    unit = values.get(("device", "unit_id"))
    lines = [
        "# Written by `mynabox provision`; paths are relative to this file, secrets are credentials.",
        "[device]",
        f"id = {_toml(values[('device', 'id')])}",
        *([f"unit_id = {_toml(unit)}"] if unit is not None else []),
        "",
        "[summary]",
        f"url = {_toml(values[('summary', 'url')])}",
        'ca_file = "summary-ca.pem"',
        'client_cert = "summary-client.pem"',
        'client_key = "summary-client-key"',
        "",
        "[mqtt]",
        f"host = {_toml(values[('mqtt', 'host')])}",
        f"port = {_toml(values.get(('mqtt', 'port'), MqttConfig.port))}",
        'ca_file = "mqtt-ca.pem"',
        'client_cert = "mqtt-client.pem"',
        'client_key = "mqtt-client-key"',
        "",
        "[sealing]",
        'device_key = "device-key"',
        'gateway_public_key = "gateway.pem"',
        "",
        "[audit]",
        'key = "audit-key"',
        "",
    ]
    for section, key in (("display", "driver"), ("panel", "pin_factory")):
        if (section, key) in values:
            lines += [f"[{section}]", f"{key} = {_toml(values[(section, key)])}", ""]
    return "\n".join(lines)


def check_tree(root: Path) -> list[str]:
    """The firmware's config loader run on a bundle laid out under `root`: its problems, or []."""
    try:
        parse_config(
            (root / CONFIG).read_text(encoding="utf-8"),
            source=root / CONFIG,
            environ={"CREDENTIALS_DIRECTORY": str(root / CREDENTIALS)},
            check_files=True,
        )
    except ConfigError as err:
        return [str(issue) for issue in err.issues]
    except (OSError, UnicodeDecodeError) as err:
        return [f"{CONFIG}: cannot read ({type(err).__name__})"]
    return []


def _check_with_firmware(files: Mapping[str, bytes], problems: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="mynabox-provision-") as tmp:
        root = Path(tmp)
        (root / CREDENTIALS).mkdir(mode=0o700)
        for name, data in files.items():
            fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        problems.extend(check_tree(root))
