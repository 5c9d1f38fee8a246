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

from mynabox.fleet.bundle import CONFIG, MANIFEST, Bundle, check_tree, expected_files, load_vehicle
from mynabox.fleet.fatimage import FatImage
from mynabox.fleet.firstboot import BUNDLE_DIR, active_id
from mynabox.fleet.provision import write_bundle

T = TypeVar("T")


CUT = Path(__file__).with_name("firstboot_cut.py")


def firstboot(
    card: Path, state: Path, crash_at: str | None = None, owner: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as the unit runs it, or (crash_at) the same command killed at that checkpoint."""
    command = ["-m", "mynabox.cli", "firstboot"] if crash_at is None else [str(CUT), crash_at]
    return subprocess.run(
        [
            sys.executable,
            *command,
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
    return [
        *(f"copied:{n}" for n in names),
        "renamed",
        "switched",
        "before-wipe",
        "zeroed",
        f"zeroed:{MANIFEST}",
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


# -- issue 23 items 1 and 12: whatever the bundle holds, no key stays on the FAT, and no traceback --------


def rewrite(card: Path, vehicle: Vehicle, **files: bytes) -> None:
    """The vehicle's bundle with some files replaced, under a manifest that matches them."""
    bundle = load_vehicle(vehicle.file)
    write_bundle(FatImage(card), Bundle({**bundle.files, **files}))


def long_number_config(vehicle: Vehicle) -> bytes:
    text = load_vehicle(vehicle.file).files[CONFIG].decode()
    return text.replace("port = 8883", "port = " + "9" * 5000).encode()


def nul_path_config(vehicle: Vehicle) -> bytes:
    text = load_vehicle(vehicle.file).files[CONFIG].decode()
    return text.replace('ca_file = "mqtt-ca.pem"', 'ca_file = "mqtt-ca.pem\\u0000"').encode()


def replace_manifest(card: Path, data: bytes) -> None:
    fat = FatImage(card)
    fat.wipe(BUNDLE_DIR / MANIFEST)
    fat.write(BUNDLE_DIR / MANIFEST, data)


HOSTILE: dict[str, Callable[[Path, Vehicle], None]] = {
    "manifest-100000-brackets": lambda card, v: replace_manifest(card, b"[" * 100_000),
    "manifest-5000-digits": lambda card, v: replace_manifest(card, b'{"version": ' + b"9" * 5000 + b"}"),
    "config-5000-digits": lambda card, v: rewrite(card, v, **{CONFIG: long_number_config(v)}),
    "config-nul-path": lambda card, v: rewrite(card, v, **{CONFIG: nul_path_config(v)}),
}


@pytest.mark.parametrize("spoil", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_bundle_is_refused_and_wiped_on_the_first_boot(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path, spoil: str
) -> None:
    HOSTILE[spoil](card, vehicle)
    raw = card.read_bytes()
    assert all(leaked(raw, secret) for secret in vehicle.secrets.values())  # the keys are there before
    state = tmp_path / "state"
    state.mkdir()
    done = firstboot(card, state)
    assert (done.returncode, "Traceback" in done.stderr) == (1, False), done.stderr
    assert "provisioning bundle refused" in done.stderr or "provisioning bundle removed" in done.stderr
    assert list(state.iterdir()) == []  # nothing installed, no staging copy left
    assert_fat_clean(card, vehicle)  # before the fix: a traceback before the wipe, on every boot
    again = firstboot(card, state)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_files_whose_names_are_mtools_patterns_are_wiped(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    fat = FatImage(card)
    extra = os.urandom(48)  # a secret of its own in files the bundle does not list
    fat.write(BUNDLE_DIR / "credentials" / "[x]", extra)  # mtools reads `[x]` as a pattern matching `x`
    fat.write(BUNDLE_DIR / "credentials" / "x", extra[::-1])
    fat.mkdir(BUNDLE_DIR / "[sub]")
    fat.write(BUNDLE_DIR / "\\[sub\\]" / "key", vehicle.secrets["device-key"])  # mcopy needs the escapes
    state = tmp_path / "state"
    state.mkdir()
    done = firstboot(card, state)
    assert (done.returncode, "Traceback" in done.stderr) == (0, False), done.stderr
    assert "14 provisioning files overwritten and deleted" in done.stdout
    assert_installed(state, provisioned, vehicle)
    assert_fat_clean(card, vehicle)
    raw = card.read_bytes()
    assert leaked(raw, extra) == [] and leaked(raw, extra[::-1]) == []


def test_a_file_in_place_of_the_bundle_directory_is_refused_once(
    vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    FatImage(card).write(BUNDLE_DIR, vehicle.secrets["device-key"])  # e.g. the bundle packed as one file
    state = tmp_path / "state"
    state.mkdir()
    done = firstboot(card, state)
    assert (done.returncode, "Traceback" in done.stderr) == (1, False), done.stderr
    assert f"{BUNDLE_DIR} on the FAT partition is a file, not a provisioning bundle" in done.stderr
    assert_fat_clean(card, vehicle)
    again = firstboot(card, state)  # before the fix: the same failure on every boot
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_provisioning_over_a_hostile_bundle_wipes_it(vehicle: Vehicle, card: Path) -> None:
    fat = FatImage(card)
    fat.mkdir(BUNDLE_DIR)
    fat.write(BUNDLE_DIR / "[k]", vehicle.secrets["audit-key"])
    fat.write(BUNDLE_DIR / "k", b"not a key")
    write_bundle(fat, load_vehicle(vehicle.file))
    assert sorted(str(p.relative_to(BUNDLE_DIR)) for p in fat.list_files(BUNDLE_DIR)) == sorted(
        expected_files() | {MANIFEST}
    )
    raw = card.read_bytes()
    assert raw.count(vehicle.secrets["audit-key"][:16]) == 1  # the new bundle's copy, not the old one


def test_a_failure_nobody_foresaw_still_wipes(
    provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    # A real failure outside the named refusals: the state "partition" is a file (NotADirectoryError while
    # copying). Before the fix any such exception skipped the wipe, and the keys stayed on the FAT.
    state = tmp_path / "state"
    state.write_bytes(b"")
    done = firstboot(card, state)
    assert (done.returncode, "Traceback" in done.stderr) == (1, False), done.stderr
    assert (
        f"provisioning bundle refused (NotADirectoryError: Not a directory: {state}/.identity-" in done.stderr
    )
    assert_fat_clean(card, vehicle)


@pytest.mark.parametrize("cut", ["before-wipe", "zeroed", f"zeroed:{MANIFEST}"])
def test_a_cut_while_wiping_a_hostile_bundle_completes_on_the_next_boot(
    cut: str, provisioned: str, vehicle: Vehicle, card: Path, tmp_path: Path
) -> None:
    HOSTILE["manifest-100000-brackets"](card, vehicle)
    FatImage(card).write(BUNDLE_DIR / "credentials" / "[x]", vehicle.secrets["audit-key"])
    state = tmp_path / "state"
    state.mkdir()
    killed = firstboot(card, state, crash_at=cut)
    assert killed.returncode == -9, (cut, killed.stdout, killed.stderr)
    done = firstboot(card, state)
    # bundle.json is zeroed last: until then the next boot refuses the bundle again; then it ends quietly
    quiet = cut == f"zeroed:{MANIFEST}"
    assert (done.returncode, "Traceback" in done.stderr) == (0 if quiet else 1, False), done.stderr
    assert_fat_clean(card, vehicle)
    assert list(state.iterdir()) == []
