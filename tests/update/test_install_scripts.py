"""The two scripts image-build/build will call: boot files into the FAT tree, RAUC's files into the root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs
from mynabox.update import stream

from .conftest import REPO, Signer

pytestmark = pytest.mark.skipif(shutil.which("mkimage") is None, reason="mkimage (u-boot-tools) missing")


def test_boot_files_go_into_the_fat_tree(tmp_path: Path) -> None:
    uboot = tmp_path / "u-boot.bin.src"
    uboot.write_bytes(b"u-boot")
    subprocess.run(
        [str(REPO / "image-build/boot/install-boot-files"), str(tmp_path), str(uboot)],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PATH": "/usr/bin:/bin"},  # the host's python3, not the venv's
    )
    assert (tmp_path / "boot.scr").read_bytes()[:4] == bytes.fromhex("27051956")  # a U-Boot image header
    assert BootFiles(tmp_path).read() == bs.Reading(bs.INITIAL, 0, bs.Damage.OK)
    assert (tmp_path / "u-boot.bin").read_bytes() == b"u-boot"


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
