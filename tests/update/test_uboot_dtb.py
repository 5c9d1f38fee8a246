"""boot.scr's device tree on a Pi, under Debian's U-Boot in qemu: the slot's own DTB, as `booti` hands it to
the kernel, carries the firmware's /system/linux,revision and linux,serial (gpiozero reads the board from
the revision; U-Boot's rpi board code does not copy /system).

As on a Pi: U-Boot's control tree is the one handed to it (here qemu's own tree with /system written into
it by fdtput, passed with -dtb, as a Pi's firmware writes it), and U-Boot's environment names `fdtfile`
and `fdt_addr_r` (the rpi board code and its default environment do; qemu's board does neither, so a
test-only boot.scr sets the two and sources the shipped FAT stub, stored beside it as mynabox.scr, which
sources each slot's own second stage, /boot/mynabox-boot.scr, where the device tree work is). The
slots' DTBs are compiled with dtc without /system, as upstream's. Each slot's /boot/vmlinuz is a 44-byte
arm64 Image that writes the device tree it was given (x0) to the UART and powers off (PSCI SYSTEM_OFF),
so the test reads the very tree the kernel would get, after U-Boot's own `booti` fix-ups.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from mynabox.update import bootstate as bs
from support.bootdisk import (
    STUB_CMD,
    Disk,
    cut_uboot,
    machine_dtb,
    make_boot_script,
    make_disk,
    missing_tools,
    ran_boot_scr,
    run_uboot,
)

BOOT_CMD = STUB_CMD
FDTFILE = "broadcom/bcm2837-rpi-3-b-plus.dtb"
REVISION = "a020d3"  # Raspberry Pi 3 Model B+ 1.3
SERIAL = "0 1a2b3c4d"  # as the firmware writes it: two cells
RAM = 0x40000000  # -M virt's RAM starts here, a Pi's at 0
# Debian's linux-image-6.12.118+deb13-arm64 vmlinuz header: text_offset 0, image_size 0x2510000, flags 0xa.
IMAGE_SIZE = 0x2510000
# U-Boot's rpi environment (include/configs/rpi.h, as in Debian's u-boot-rpi 2025.01) moved to virt's RAM,
# and the rpi board's fdtfile. The shipped script is loaded at the Pi's scriptaddr (this wrapper runs from
# a copy U-Boot made).
WRAPPER = f"""setenv fdtfile {FDTFILE}
setenv kernel_addr_r {RAM + 0x80000:#x}
setenv scriptaddr {RAM + 0x2400000:#x}
setenv pxefile_addr_r {RAM + 0x2500000:#x}
setenv fdt_addr_r {RAM + 0x2600000:#x}
setenv ramdisk_addr_r {RAM + 0x2700000:#x}
load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{scriptaddr}} mynabox.scr
source ${{scriptaddr}}
"""
SLOT_DTS = {
    # Upstream's DTBs have no /system.
    "A": '/dts-v1/;\n/ {\n model = "slot A";\n};\n',
    # A DTB with a /system of its own: the firmware's values win.
    "B": '/dts-v1/;\n/ {\n model = "slot B";\n system { linux,revision = <0x1>; };\n};\n',
}
# The kernel: arm64 Image header as Debian's (booting.rst: branch to the code, text_offset 0, image_size,
# flags, magic "ARM\x64"; booti moves it to the next 2 MiB boundary), then (llvm-mc -triple=aarch64):
#   ldr w1, [x0, #4]; rev w1, w1          the tree's big-endian totalsize
#   mov x2, #0x09000000                   -M virt's PL011 data register
#   1: ldrb w3, [x0], #1; strb w3, [x2]; subs w1, w1, #1; b.ne 1b
#   mov w0, #8; movk w0, #0x8400, lsl #16; hvc #0; b .     PSCI SYSTEM_OFF: qemu exits
CODE = (0xB9400401, 0x5AC00821, 0xD2A12002, 0x38401403, 0x39000043, 0x71000421, 0x54FFFFA1,
        0x52800100, 0x72B08000, 0xD4000002, 0x14000000)  # fmt: skip
HEADER = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, IMAGE_SIZE, 0xA, 0, 0, 0, 0x644D5241, 0)
KERNEL = (HEADER + struct.pack(f"<{len(CODE)}I", *CODE)).ljust(4096, b"\0")

MISSING = missing_tools() + [t for t in ("dtc", "fdtput", "fdtget") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"missing: {', '.join(MISSING)}")


@pytest.fixture(scope="module")
def disk_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("dtbdisk")
    for slot in ("A", "B"):
        boot = work / f"slot-{slot}" / "boot"
        (boot / "dtbs" / "broadcom").mkdir(parents=True)
        (boot / "vmlinuz").write_bytes(KERNEL)
        (boot / "initrd.img").write_bytes(b"i" * 5)
        dts = work / f"slot-{slot}.dts"
        dts.write_text(SLOT_DTS[slot])
        dtb = boot / "dtbs" / FDTFILE
        subprocess.run(["dtc", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(dts)], check=True)
    make_boot_script(BOOT_CMD, work / "mynabox.scr")
    (work / "wrapper.cmd").write_text(WRAPPER)
    make_boot_script(work / "wrapper.cmd", work / "boot.scr")
    disk = make_disk(
        work / "template.img",
        work,
        {"boot.scr": (work / "boot.scr").read_bytes(), "mynabox.scr": (work / "mynabox.scr").read_bytes()},
        {"A": work / "slot-A", "B": work / "slot-B"},
    )
    return disk.path


@pytest.fixture(scope="module")
def firmware_dtb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qemu's own tree with /system as a Pi's firmware writes it."""
    dtb = machine_dtb(tmp_path_factory.mktemp("fwdtb") / "fw.dtb")
    subprocess.run(["fdtput", "-c", str(dtb), "/system"], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,revision", REVISION], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,serial", *SERIAL.split()], check=True)
    return dtb


def boot(template: Path, tmp_path: Path, slot: str, dtb: Path | None) -> tuple[Path, str]:
    """Boots `slot`; returns the device tree the kernel was handed (written to a file) and the console."""
    path = tmp_path / "disk.img"
    shutil.copyfile(template, path)
    disk = Disk(path)
    disk.write_fat("bootstate.0", bs.encode(bs.set_primary(bs.INITIAL, slot)), tmp_path)
    run = run_uboot(disk, dtb=dtb)
    assert ran_boot_scr(run.console), run.console
    # The slot's DTB and the initramfs lie above where booti puts the kernel, not at the board's addresses.
    found = re.search(
        rf"slot {slot}: kernel, initramfs (0x)?([0-9a-f]+):5, device tree (0x)?([0-9a-f]+);", run.console
    )
    assert found is not None, run.console
    kernel_end = RAM + 0x200000 + IMAGE_SIZE
    assert int(found.group(2), 16) >= kernel_end and int(found.group(4), 16) >= kernel_end, found.group(0)
    start = run.raw.find(b"\xd0\x0d\xfe\xed", run.raw.find(b"Starting kernel"))
    assert start > 0, run.console
    (size,) = struct.unpack(">I", run.raw[start + 4 : start + 8])
    handed = tmp_path / "handed.dtb"
    handed.write_bytes(run.raw[start : start + size])
    assert len(handed.read_bytes()) == size, "the kernel's dump of its device tree was cut short"
    assert get(handed, "/", "model") == f"slot {slot}"
    assert f"rauc.slot={slot}" in str(get(handed, "/chosen", "bootargs"))
    return handed, run.console


def get(dtb: Path, node: str, prop: str, kind: str = "s") -> str | None:
    out = subprocess.run(
        ["fdtget", "-t", kind, str(dtb), node, prop], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else None


def dtb_line(console: str) -> str:
    found = re.search(r"mynabox: device tree .*", console)
    assert found is not None, console
    return found.group(0)


def test_firmware_revision_and_serial_reach_the_kernel_with_an_upstream_dtb(
    disk_template: Path, firmware_dtb: Path, tmp_path: Path
) -> None:
    handed, console = boot(disk_template, tmp_path, "A", firmware_dtb)
    assert get(handed, "/system", "linux,revision", "x") == REVISION
    assert get(handed, "/system", "linux,serial", "x") == SERIAL
    assert dtb_line(console) == (
        f"mynabox: device tree {FDTFILE}: copied from the firmware: linux,revision linux,serial; "
        f"/system/linux,revision 0x00{REVISION.upper()}"
    )


def test_firmware_values_replace_a_dtbs_own(disk_template: Path, firmware_dtb: Path, tmp_path: Path) -> None:
    handed, _ = boot(disk_template, tmp_path, "B", firmware_dtb)
    assert get(handed, "/system", "linux,revision", "x") == REVISION
    assert get(handed, "/system", "linux,serial", "x") == SERIAL


def test_a_firmware_tree_without_system_copies_nothing_and_boots_on(
    disk_template: Path, tmp_path: Path
) -> None:
    handed, console = boot(disk_template, tmp_path, "A", None)
    assert get(handed, "/system", "linux,revision", "x") is None
    assert dtb_line(console).endswith(": copied from the firmware:; /system/linux,revision none")


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MYNABOX_TEST_KERNEL"), reason="set MYNABOX_TEST_KERNEL to a Debian arm64 vmlinuz"
)
def test_a_real_debian_kernel_starts_from_the_pis_layout(firmware_dtb: Path, tmp_path: Path) -> None:
    """Debian's own Image (not the 44-byte one) through booti with the rpi environment's addresses: it gets
    past booti's move and starts with our command line (the slot's DTB is qemu's own tree without /system,
    so the kernel finds its UART)."""
    kernel = Path(os.environ["MYNABOX_TEST_KERNEL"])
    boot = tmp_path / "slot-A" / "boot"
    (boot / "dtbs" / "broadcom").mkdir(parents=True)
    shutil.copyfile(kernel, boot / "vmlinuz")
    (boot / "initrd.img").write_bytes(b"not an initramfs")
    machine_dtb(boot / "dtbs" / FDTFILE)
    make_boot_script(BOOT_CMD, tmp_path / "mynabox.scr")
    (tmp_path / "wrapper.cmd").write_text(WRAPPER)
    make_boot_script(tmp_path / "wrapper.cmd", tmp_path / "boot.scr")
    disk = make_disk(
        tmp_path / "disk.img",
        tmp_path,
        {name: (tmp_path / name).read_bytes() for name in ("boot.scr", "mynabox.scr")},
        {"A": tmp_path / "slot-A"},
        slot_mib=kernel.stat().st_size // (1 << 20) + 16,
    )
    # A marker printed after the whole command line (the console is read up to it).
    console = cut_uboot(disk, b"Memory: ", 0.1, timeout=240, dtb=firmware_dtb)
    assert "copied from the firmware: linux,revision linux,serial" in console, console
    assert "overlaps" not in console, console
    line = next(x for x in console.splitlines() if "Kernel command line:" in x)
    assert "rauc.slot=A" in line
