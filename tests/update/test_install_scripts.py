"""The two scripts image-build/build will call: boot files into the FAT tree, RAUC's files into the root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs
from mynabox.update import stream

from .conftest import REPO, Signer

pytestmark = pytest.mark.skipif(shutil.which("mkimage") is None, reason="mkimage (u-boot-tools) missing")


def install_boot_files(*args: Path, epoch: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PATH"] = "/usr/bin:/bin"  # the host's python3, not the venv's
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    return subprocess.run(
        [str(REPO / "image-build/boot/install-boot-files"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_boot_files_go_into_the_fat_tree_and_the_second_stage_into_the_slot(tmp_path: Path) -> None:
    uboot = tmp_path / "u-boot.bin.src"
    uboot.write_bytes(b"u-boot")
    fat, root = tmp_path / "fat", tmp_path / "root"
    fat.mkdir()
    (root / "boot").mkdir(parents=True)
    done = install_boot_files(fat, root, uboot, epoch="1700000000")
    assert done.returncode == 0, done.stderr
    for scr, name in (
        (fat / "boot.scr", b"mynabox A/B"),
        (root / "boot/mynabox-boot.scr", b"mynabox slot boot"),
    ):
        head = scr.read_bytes()[:64]
        assert head[:4] == bytes.fromhex("27051956"), scr  # a U-Boot legacy image header
        assert int.from_bytes(head[8:12], "big") == 1700000000, scr  # its time: the build's epoch
        assert head[32:].rstrip(b"\0") == name
    assert sorted(p.name for p in fat.iterdir()) == ["boot.scr", "bootstate.0", "bootstate.1", "u-boot.bin"]
    assert [p.name for p in (root / "boot").iterdir()] == ["mynabox-boot.scr"]  # the stub stays on the FAT
    assert BootFiles(fat).read() == bs.Reading(bs.INITIAL, 0, bs.Damage.OK)
    assert (fat / "u-boot.bin").read_bytes() == b"u-boot"


def test_boot_scripts_bytes_follow_from_the_scripts_alone(tmp_path: Path) -> None:
    """check-reproducible covers both (boot.scr in the card image, the second stage in slot A and every
    bundle): mkimage's header time is SOURCE_DATE_EPOCH's, 0 without one, never the clock's."""
    made = []
    for run in range(2):
        fat, root = tmp_path / f"fat{run}", tmp_path / f"root{run}"
        fat.mkdir()
        (root / "boot").mkdir(parents=True)
        assert install_boot_files(fat, root).returncode == 0
        made.append(((fat / "boot.scr").read_bytes(), (root / "boot/mynabox-boot.scr").read_bytes()))
        time.sleep(1.1)  # a clock-stamped header would differ
    assert made[0] == made[1]
    assert int.from_bytes(made[0][1][8:12], "big") == 0


def test_a_second_stage_over_what_the_stub_loads_is_refused(tmp_path: Path) -> None:
    """The flashed stubs load at most 64 KiB of it: a bigger one would fail its CRC on every card."""
    boot = tmp_path / "image-build" / "boot"
    shutil.copytree(REPO / "image-build" / "boot", boot)
    cmd = boot / "mynabox-boot.cmd"
    cmd.write_text(cmd.read_text() + "# padding\n" * 7000)
    fat, root = tmp_path / "fat", tmp_path / "root"
    fat.mkdir()
    (root / "boot").mkdir(parents=True)
    done = subprocess.run(
        [str(boot / "install-boot-files"), str(fat), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "over 64 KiB" in done.stderr, done.stderr
    assert not (root / "boot/mynabox-boot.scr").exists()
    size = len((REPO / "image-build/boot/mynabox-boot.cmd").read_bytes())
    print(f"\nthe shipped second stage's script: {size} bytes (the stub loads 65536 with the 72-byte header)")


def test_install_boot_files_refuses_without_a_slot_root(tmp_path: Path) -> None:
    done = install_boot_files(tmp_path)
    assert done.returncode == 2 and "usage" in done.stderr
    done = install_boot_files(tmp_path, tmp_path / "nowhere")
    assert done.returncode == 2 and "has no /boot" in done.stderr


def test_rauc_files_go_into_the_root_tree(tmp_path: Path, signer: Signer) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "boot" / "vmlinuz-6.12.0-test-arm64").write_bytes(b"k")
    script = str(REPO / "image-build/rauc/install-rauc")
    subprocess.run([script, str(root), str(signer.ca)], check=True, capture_output=True, timeout=60)
    assert (root / "etc/rauc/system.conf").read_text() == (REPO / "image-build/rauc/system.conf").read_text()
    assert (root / "etc/rauc/keyring.pem").read_bytes() == signer.ca.read_bytes()
    assert os.access(root / "usr/lib/mynabox/rauc-bootloader-backend", os.X_OK)
    assert "dm-verity" in (root / "etc/modules-load.d/mynabox-rauc.conf").read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/rauc.service").resolve() == (
        root / "etc/systemd/system/rauc.service"
    )
    assert (root / "usr/share/dbus-1/system.d/de.pengutronix.rauc.conf").is_file()
    # RAUC's streaming helper runs as its own system user (system.conf [streaming] sandbox-user), not root.
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert stream.sandbox_user((root / "etc/rauc/system.conf").read_text()) == "rauc-stream"
    assert 0 < int(users["rauc-stream"][2]) < 1000 and users["rauc-stream"][6] == "/usr/sbin/nologin"
    assert os.readlink(root / "boot/vmlinuz") == "vmlinuz-6.12.0-test-arm64"
    assert os.readlink(root / "boot/dtbs") == "../usr/lib/linux-image-6.12.0-test-arm64"
    subprocess.run([script, str(root), str(signer.ca)], check=True, capture_output=True, timeout=60)
    assert (root / "etc/kernel-img.conf").read_text().count("link_in_boot") == 1  # a second run adds nothing
    assert (root / "etc/passwd").read_text().count("rauc-stream:") == 1
    bad = subprocess.run(
        [script, str(root), str(signer.key)], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "holds no certificate" in bad.stderr


def test_an_image_built_without_the_fleets_ca_has_no_keyring(tmp_path: Path) -> None:
    # image-build/build without --keyring: RAUC's files all there but the keyring, so every bundle is refused.
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    script = str(REPO / "image-build/rauc/install-rauc")
    subprocess.run([script, str(root)], check=True, capture_output=True, timeout=60)
    assert (root / "etc/rauc/system.conf").is_file()
    assert not (root / "etc/rauc/keyring.pem").exists()
