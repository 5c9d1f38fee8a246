"""`mynabox firstboot` against a card image (mkfs.vfat + mtools) and a directory as the state partition:
the identity lands with the service user's owner and 0700/0400 modes, no byte of a key can be read back
from the FAT image, and a run killed at any step completes on the next."""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from tests.fleet.conftest import Vehicle, fragments, leaked

from mynabox.fleet.bundle import MANIFEST, check_tree, expected_files, load_vehicle
from mynabox.fleet.fatimage import FatImage
from mynabox.fleet.firstboot import BUNDLE_DIR, CRASH_ENV, active_id
from mynabox.fleet.provision import write_bundle

T = TypeVar("T")


def firstboot(
    card: Path, state: Path, crash_at: str | None = None, owner: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mynabox.cli",
            "firstboot",
            "--fat",
            str(card),
            "--state",
            str(state),
            "--owner",
            owner or getpass.getuser(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.fixture
def provisioned(vehicle: Vehicle, card: Path) -> str:
    bundle = load_vehicle(vehicle.file)
    write_bundle(FatImage(card), bundle)
    raw = card.read_bytes()
    for secret in vehicle.secrets.values():  # guards the scans below: the key is there before first boot
        assert fragments(secret) and leaked(raw, secret) == fragments(secret)
    return bundle.id


def as_user(uid: int | None, call: Callable[[], T]) -> T:
    """`call()` with `uid` as the effective user (None: as we are)."""
    if uid is None or uid == os.geteuid():
        return call()
    os.seteuid(uid)
    try:
        return call()
    finally:
        os.seteuid(0)


def assert_installed(state: Path, bundle_id: str, vehicle: Vehicle, uid: int | None = None) -> None:
    assert active_id(state) == bundle_id
    identity = state / "identity"
    assert as_user(uid, lambda: check_tree(identity)) == []  # the firmware's check, as the service user
    for name, secret in vehicle.secrets.items():
        path = identity / "credentials" / name
        assert path.read_bytes() == secret
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_uid == (os.getuid() if uid is None else uid)
    for d in (identity.resolve(), identity / "credentials"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert d.stat().st_uid == (os.getuid() if uid is None else uid)
    assert sorted(p.name for p in state.iterdir()) == ["identity", f"identity-{bundle_id}"]


def assert_fat_clean(card: Path, vehicle: Vehicle) -> None:
    raw = card.read_bytes()
    for name, secret in vehicle.secrets.items():
        assert leaked(raw, secret) == [], f"{name} can be read back from the FAT image"
    assert not FatImage(card).exists(BUNDLE_DIR)


def test_first_boot_installs_and_wipes(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    done = firstboot(card, state)
    assert done.returncode == 0, done.stderr
    assert f"identity {provisioned} installed" in done.stdout
    assert "11 provisioning files overwritten and deleted" in done.stdout
    assert_installed(state, provisioned, vehicle)
    assert_fat_clean(card, vehicle)
    again = firstboot(card, state)  # the second boot does nothing
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""
    assert_installed(state, provisioned, vehicle)


@pytest.mark.skipif(os.geteuid() != 0, reason="root hands the identity to another user (as in the image)")
def test_root_installs_the_identity_for_the_service_user(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    # As mynabox-firstboot.service does: root, --owner the service user. The files are checked before
    # they are handed over (the image's first boot once refused every file as "owned by uid 986").
    nobody = pwd.getpwnam("nobody")
    # Under /tmp with a fixed name, so that the service user can reach it (tmp_path's parents are 0700).
    state = Path(f"/tmp/mynabox-firstboot-{os.getpid()}")
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(mode=0o755)
    try:
        done = firstboot(card, state, owner="nobody")
        assert done.returncode == 0, done.stderr
        assert_installed(state, provisioned, vehicle, uid=nobody.pw_uid)
        assert_fat_clean(card, vehicle)
    finally:
        shutil.rmtree(state)


def checkpoints() -> list[str]:
    names = sorted(expected_files())
    secrets_first = sorted((n for n in names), key=lambda n: (not n.startswith("credentials/"), n))
    return [
        *(f"copied:{n}" for n in names),
        "renamed",
        "switched",
        "before-wipe",
        *(f"wiped:{n}" for n in secrets_first),
        f"wiped:{MANIFEST}",
    ]


@pytest.mark.parametrize("cut", checkpoints())
def test_a_first_boot_cut_anywhere_completes_on_the_next(
    cut: str, provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    killed = firstboot(card, state, crash_at=cut)
    assert killed.returncode == -9, (cut, killed.stdout, killed.stderr)  # it really died there
    done = firstboot(card, state)
    assert done.returncode == 0, done.stderr
    assert_installed(state, provisioned, vehicle)
    assert_fat_clean(card, vehicle)


def test_reprovisioning_replaces_the_identity(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    assert firstboot(card, state).returncode == 0
    (vehicle.dir / "audit-key").write_bytes(os.urandom(40))
    vehicle.secrets["audit-key"] = (vehicle.dir / "audit-key").read_bytes()
    bundle = load_vehicle(vehicle.file)
    write_bundle(FatImage(card), bundle)
    assert firstboot(card, state).returncode == 0
    assert_installed(state, bundle.id, vehicle)
    assert_fat_clean(card, vehicle)


def test_a_damaged_bundle_is_refused_and_still_wiped(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    fat = FatImage(card)
    path = BUNDLE_DIR / "gateway.pem"
    data = bytearray(fat.read(path))
    data[40] ^= 1
    fat.wipe(path)
    fat.write(path, bytes(data))
    state = tmp_path / "state"
    state.mkdir()
    done = firstboot(card, state)
    assert done.returncode == 1
    assert "gateway.pem: does not match bundle.json" in done.stderr
    assert list(state.iterdir()) == []
    assert_fat_clean(card, vehicle)


def test_a_bundle_cut_short_by_provisioning_is_removed(vehicle: Vehicle, card: Path, tmp_path: Path) -> None:
    fat = FatImage(card)
    fat.mkdir(BUNDLE_DIR)
    fat.mkdir(BUNDLE_DIR / "credentials")
    fat.write(BUNDLE_DIR / "credentials" / "device-key", vehicle.secrets["device-key"])  # no bundle.json
    state = tmp_path / "state"
    state.mkdir()
    done = firstboot(card, state)
    assert done.returncode == 1 and "incomplete provisioning bundle removed" in done.stderr
    assert list(state.iterdir()) == []
    assert_fat_clean(card, vehicle)
