"""scripts/fetch-u-boot-qemu: the U-Boot the boot-script tests run is the release the image ships, fetched
once and refused unless its .deb's SHA-256 is the pinned one. Offline here (`--deb`: a .deb made with
dpkg-deb, `--pin`: a pin naming a temporary directory); the download through apt's private configuration
runs in scripts/install-deps.sh, not in the tests (no network)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from support.bootdisk import UBOOT_BIN, UBOOT_PIN, UBOOT_RELEASE

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "fetch-u-boot-qemu"
MEMBER = "usr/lib/u-boot/qemu_arm64/u-boot.bin"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb missing (Debian's dpkg)")


def make_deb(tmp: Path, binary: bytes) -> Path:
    root = tmp / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: u-boot-qemu\nVersion: 2025.01-3+test\nArchitecture: all\n"
        "Maintainer: test <test@invalid>\nDescription: test\n"
    )
    for path, data in ((MEMBER, binary), ("usr/lib/u-boot/qemu_arm64/uboot.elf", b"elf"),
                       ("usr/lib/u-boot/qemu-riscv64/u-boot.bin", b"other")):  # fmt: skip
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    deb = tmp / "u-boot-qemu.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


def pin(tmp: Path, sha256: str) -> tuple[Path, Path]:
    dest = tmp / "cache" / "u-boot-qemu_2025.01-3+test"
    path = tmp / "test.pin"
    path.write_text(
        "# a test pin\nUBOOT_QEMU_VERSION=2025.01-3+test\n"
        f"UBOOT_QEMU_SHA256={sha256}\nUBOOT_QEMU_DIR={dest}\n"
    )
    return path, dest


def fetch(pin_file: Path, deb: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--pin", str(pin_file), "--deb", str(deb)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_pinned_deb_gives_only_u_boot_bin_and_a_second_run_fetches_nothing(tmp_path: Path) -> None:
    deb = make_deb(tmp_path, b"u-boot 2025.01")
    pin_file, dest = pin(tmp_path, hashlib.sha256(deb.read_bytes()).hexdigest())
    done = fetch(pin_file, deb)
    assert done.returncode == 0, done.stderr
    assert (dest / MEMBER).read_bytes() == b"u-boot 2025.01"
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["SOURCE", MEMBER]
    assert list((dest.parent).iterdir()) == [dest]  # its private work directory is gone
    # Present: nothing fetched, nothing checked, nothing changed (even given another .deb).
    (tmp_path / "other").mkdir()
    other = make_deb(tmp_path / "other", b"something else")
    again = fetch(pin_file, other)
    assert again.returncode == 0 and "present" in again.stdout, again.stderr
    assert (dest / MEMBER).read_bytes() == b"u-boot 2025.01"


def test_a_deb_whose_hash_is_not_the_pin_is_refused_and_nothing_installed(tmp_path: Path) -> None:
    deb = make_deb(tmp_path, b"u-boot 2025.01")
    pin_file, dest = pin(tmp_path, "0" * 64)
    done = fetch(pin_file, deb)
    assert done.returncode == 1
    assert "SHA-256 MISMATCH" in done.stderr and hashlib.sha256(deb.read_bytes()).hexdigest() in done.stderr
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_a_deb_without_the_qemu_arm64_binary_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: u-boot-qemu\nVersion: 1\nArchitecture: all\nMaintainer: t <t@invalid>\nDescription: t\n"
    )
    (root / "usr").mkdir()
    deb = tmp_path / "empty.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True
    )
    pin_file, dest = pin(tmp_path, hashlib.sha256(deb.read_bytes()).hexdigest())
    done = fetch(pin_file, deb)
    assert done.returncode == 1 and f"no {MEMBER}" in done.stderr, done.stderr
    assert not dest.exists()


def test_the_repo_pin_is_the_one_the_tests_and_the_emulated_box_boot() -> None:
    text = UBOOT_PIN.read_text()
    values = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert set(values) == {"UBOOT_QEMU_VERSION", "UBOOT_QEMU_SHA256", "UBOOT_QEMU_DIR"}
    assert len(values["UBOOT_QEMU_SHA256"]) == 64 and int(values["UBOOT_QEMU_SHA256"], 16) >= 0
    assert values["UBOOT_QEMU_VERSION"] == UBOOT_RELEASE
    assert Path(values["UBOOT_QEMU_DIR"]) / MEMBER == UBOOT_BIN
    # The version names the same u-boot source as the image's u-boot-rpi (trixie's 2025.01).
    assert UBOOT_RELEASE.startswith("2025.01-")


@pytest.mark.parametrize("script", ["fetch-u-boot-qemu", "install-deps.sh"])
def test_shellcheck_clean(script: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (scripts/install-deps.sh installs it)")
    done = subprocess.run(
        ["shellcheck", "--severity=warning", str(REPO / "scripts" / script)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout
