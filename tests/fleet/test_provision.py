"""`mynabox provision`: a checked identity onto a card image's FAT partition, with mtools and without root;
bad input refused before a byte is written."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.fleet.conftest import DEVICE_ID, Vehicle, fragments, leaked, vehicle_text

from mynabox.adapters.keyfiles import save_private_key
from mynabox.fleet.bundle import MANIFEST, BundleError, load_vehicle, parse_manifest
from mynabox.fleet.fatimage import FatImage
from mynabox.fleet.firstboot import BUNDLE_DIR
from mynabox.fleet.provision import generate_keys, write_bundle


def provision(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "provision", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_write_puts_the_whole_bundle_on_the_card(vehicle: Vehicle, card: Path) -> None:
    started = time.monotonic()
    done = provision("write", str(vehicle.file), str(card))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    fat = FatImage(card)
    assert fat.offset == 2048 * 512
    bundle_id, files = parse_manifest(fat.read(BUNDLE_DIR / MANIFEST))
    for name, sha in files.items():
        assert hashlib.sha256(fat.read(BUNDLE_DIR / name)).hexdigest() == sha
    for name, data in vehicle.secrets.items():
        assert fat.read(BUNDLE_DIR / "credentials" / name) == data
    config = fat.read(BUNDLE_DIR / "config.toml").decode()
    assert f'id = "{DEVICE_ID}"' in config and 'unit_id = "tokyo-12"' in config
    assert bundle_id in done.stdout
    print(f"provision write: {elapsed:.2f} s")


def test_rewriting_replaces_the_old_bundle_and_wipes_its_secrets(vehicle: Vehicle, card: Path) -> None:
    fat = FatImage(card)
    write_bundle(fat, load_vehicle(vehicle.file))
    old_key = vehicle.secrets["device-key"]
    save_private_key(vehicle.dir / "device-key.pem", ec.generate_private_key(ec.SECP256R1()))
    write_bundle(fat, load_vehicle(vehicle.file))
    assert fat.read(BUNDLE_DIR / "credentials" / "device-key") != old_key
    assert fragments(old_key) and leaked(card.read_bytes(), old_key) == []


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (
            {"mqtt_client_key": '"summary/client-amb-0001.key"'},
            "mqtt.client_key: does not match the certificate",
        ),
        ({"id": '"Amb_0001"'}, "device.id: 'Amb_0001' is not allowed"),
        ({"extra": 'colour = "red"'}, "device.colour: unknown field"),
        ({"summary_client_key": '"p384.pem"'}, "summary.client_key: not an EC P-256 private key"),
        ({"id": "1"}, "device.id: expected a string"),
        ({"mqtt_client_key": '"missing.pem"'}, "mqtt.client_key:"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    vehicle: Vehicle, card: Path, override: dict[str, str], reason: str
) -> None:
    save_private_key_p384(vehicle.dir / "p384.pem")
    vehicle.write(vehicle_text(**override))
    before = digest(card)
    done = provision("write", str(vehicle.file), str(card))
    assert done.returncode == 2
    assert reason in done.stderr
    assert "nothing written" in done.stderr
    assert digest(card) == before


def save_private_key_p384(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)


def test_unknown_section_and_missing_field_are_named(vehicle: Vehicle) -> None:
    text = vehicle_text().replace('host = "gateway.local"\n', "") + '\n[mqt]\nhost = "x"\n'
    vehicle.write(text)
    with pytest.raises(BundleError) as err:
        load_vehicle(vehicle.file)
    assert "mqtt.host: missing (required)" in err.value.problems
    assert any(p.startswith("mqt: unknown section (did you mean 'mqtt'?)") for p in err.value.problems)


def test_refusals_never_show_key_bytes(vehicle: Vehicle) -> None:
    vehicle.write(vehicle_text(mqtt_client_key='"summary/client-amb-0001.key"'))
    done = provision("check", str(vehicle.file))
    assert done.returncode == 2
    for secret in vehicle.secrets.values():
        for line in secret.splitlines()[1:-1]:
            assert line.decode() not in done.stderr + done.stdout


def test_a_target_that_is_not_a_card_is_refused(vehicle: Vehicle, tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    done = provision("write", str(vehicle.file), str(junk))
    assert done.returncode == 1
    assert "no boot sector or MBR" in done.stderr


def test_keys_generates_keys_and_csrs_that_provision_accepts(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    done = provision("keys", "--device-id", DEVICE_ID, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "BEGIN PUBLIC KEY" in done.stdout and done.stdout.count("BEGIN CERTIFICATE REQUEST") == 2
    assert "PRIVATE KEY" not in done.stdout
    for name in ("device-key.pem", "mqtt-client-key.pem", "summary-client-key.pem", "audit-key"):
        assert (out / name).stat().st_mode & 0o777 == 0o600
    from cryptography import x509

    csr = x509.load_pem_x509_csr((out / "mqtt-client.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == f"CN={DEVICE_ID}"
    again = provision("keys", "--device-id", DEVICE_ID, "--out", str(out))
    assert again.returncode == 2 and "would overwrite" in again.stderr


def test_keys_refuses_a_device_id_the_firmware_refuses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a device id"):
        generate_keys(tmp_path, "AMB 1")
    assert list(tmp_path.iterdir()) == []


def test_list_files_walks_subdirectories(vehicle: Vehicle, card: Path) -> None:
    fat = FatImage(card)
    write_bundle(fat, load_vehicle(vehicle.file))
    names = {str(p.relative_to(BUNDLE_DIR)) for p in fat.list_files(BUNDLE_DIR)}
    assert "credentials/device-key" in names and MANIFEST in names and "credentials" not in names
    assert len(names) == 11
    assert fat.list_files(PurePosixPath("/nothing")) == []


def test_bench_hardware_settings_pass_through_and_are_checked_by_the_firmware(vehicle: Vehicle) -> None:
    vehicle.write(vehicle_text() + '\n[display]\ndriver = "dummy"\n\n[panel]\npin_factory = "mock"\n')
    config = load_vehicle(vehicle.file).files["config.toml"].decode()
    assert '[display]\ndriver = "dummy"' in config and '[panel]\npin_factory = "mock"' in config
    vehicle.write(vehicle_text() + '\n[display]\ndriver = "crt"\n')
    with pytest.raises(BundleError) as err:
        load_vehicle(vehicle.file)
    assert any(p.startswith("display.driver: 'crt' is not one of") for p in err.value.problems)


def test_gateway_keys_are_a_pair_stock_libraries_import_and_never_overwritten(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from mynabox.adapters.keyfiles import load_private_key, load_public_key
    from mynabox.payload.envelope import Kind
    from mynabox.payload.seal import Opener, Sealer

    out = tmp_path / "gw"
    done = provision("gateway-keys", "--out", str(out))
    assert done.returncode == 0, done.stderr
    private, public = out / "gateway-envelope-key.pem", out / "gateway-envelope.pub.pem"
    assert private.stat().st_mode & 0o777 == 0o600 and public.read_text() in done.stdout
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SPKI
    device = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    sealed = Sealer(DEVICE_ID, device, load_public_key(public)).seal(
        Kind.AUDIT, {"n": 1}, now=now, clock_synced=True, seq=1
    )
    opener = Opener(
        load_private_key(private),
        {DEVICE_ID: device.public_key()},
        max_age=timedelta(days=1),
        max_skew=timedelta(minutes=5),
        max_size=1 << 20,
    )
    assert opener.open(sealed.token, now=now).body == {"n": 1}
    before = private.read_bytes()
    again = provision("gateway-keys", "--out", str(out))
    assert again.returncode != 0 and "would overwrite" in again.stderr
    assert private.read_bytes() == before


# -- issue 23 items 5 and 8: hostile vehicle files and targets, keys all or nothing ------------------------


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            lambda t: t.replace('"mqtt/ca.pem"', '"mqtt/\\u0000ca.pem"'),
            "mqtt.ca_file: holds a control character",
        ),
        (lambda t: t.replace("port = 8883", "port = " + "[" * 5000 + "]" * 5000), "nested too deep"),
        (lambda t: t + "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "nested too deep"),
        (lambda t: t.replace("port = 8883", "port = " + "9" * 5000), "a number too long to convert"),
    ],
    ids=["nul-in-path", "arrays-5000-deep", "tables-5000-deep", "5000-digit-port"],
)
@pytest.mark.parametrize("action", ["check", "write"])
def test_hostile_vehicle_files_are_refused_with_reasons(
    vehicle: Vehicle, card: Path, edit: Callable[[str], str], reason: str, action: str
) -> None:
    vehicle.write(edit(vehicle_text()))
    before = digest(card)
    done = provision(action, str(vehicle.file), *([str(card)] if action == "write" else []))
    assert (done.returncode, "Traceback" in done.stderr) == (2, False), done.stderr
    assert reason in done.stderr and "refused, nothing written" in done.stderr
    assert digest(card) == before


def test_writing_onto_a_fifo_is_refused_at_once(vehicle: Vehicle, tmp_path: Path) -> None:
    fifo = tmp_path / "card.fifo"
    os.mkfifo(fifo)
    done = provision("write", str(vehicle.file), str(fifo), timeout=30)  # before: blocked
    assert (done.returncode, "Traceback" in done.stderr) == (2, False), done.stderr
    assert f"{fifo}: a FIFO, not an image file or a block device" in done.stderr


def test_a_directory_or_a_character_device_as_target_is_refused(vehicle: Vehicle, tmp_path: Path) -> None:
    for target, kind in ((tmp_path, "a directory"), (Path("/dev/zero"), "a character device")):
        done = provision("write", str(vehicle.file), str(target))
        assert (done.returncode, "Traceback" in done.stderr) == (2, False), done.stderr
        assert f"{target}: {kind}, not an image file or a block device" in done.stderr


@pytest.mark.parametrize("stale", ["mqtt-client.csr", "summary-client.csr", "device-key.pub.pem"])
def test_keys_refuses_a_stale_file_before_writing_any_key(tmp_path: Path, stale: str) -> None:
    out = tmp_path / "keys"
    out.mkdir()
    (out / stale).write_text("left from an earlier run\n")
    done = provision("keys", "--device-id", DEVICE_ID, "--out", str(out))
    assert done.returncode == 2 and f"would overwrite {stale}" in done.stderr, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [stale]  # before the fix: three private keys beside it
    (out / stale).unlink()
    assert provision("keys", "--device-id", DEVICE_ID, "--out", str(out)).returncode == 0


def test_keys_refuses_a_dangling_symlink_in_the_way(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    out.mkdir()
    (out / "audit-key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match="would overwrite audit-key"):
        generate_keys(out, DEVICE_ID)
    assert [p.name for p in out.iterdir()] == ["audit-key"] and not (tmp_path / "elsewhere").exists()


def test_keys_that_fail_halfway_leave_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another run takes the last name between the check and the write: write_new's O_EXCL refuses it, and
    # the files this call wrote before are removed (no private key left without its vehicle file).
    out = tmp_path / "keys"
    out.mkdir()
    from mynabox.fleet import provision as prov

    real = prov.write_new

    def racing(path: Path, data: bytes, *, mode: int) -> None:
        if path.name == "vehicle.toml":
            path.write_text("another run's file\n")
        real(path, data, mode=mode)

    monkeypatch.setattr(prov, "write_new", racing)
    with pytest.raises(FileExistsError):
        generate_keys(out, DEVICE_ID)
    assert [p.name for p in out.iterdir()] == ["vehicle.toml"]
