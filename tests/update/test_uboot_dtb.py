"""boot.scr's device tree on a Pi, under Debian's U-Boot in qemu: the slot's own DTB gets the firmware's
/system/linux,revision and linux,serial (gpiozero reads the board from the revision).

As on a Pi: U-Boot's control tree is the one handed to it (here qemu's own tree with /system written into
it by fdtput, passed with -dtb, as a Pi's firmware writes it), and U-Boot's environment names `fdtfile`
and `fdt_addr_r` (the rpi board code and its default environment do; qemu's board does neither, so a
test-only boot.scr sets the two and sources the shipped script, stored beside it as mynabox.scr). The
slots' DTBs are compiled with dtc without /system, as upstream's. The script reads the revision back from
the DTB it hands to `booti` and prints it; the markers in /boot are no kernel, so `booti` refuses and the
script resets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mynabox.update import bootstate as bs
from support.bootdisk import Disk, machine_dtb, make_boot_script, make_disk, missing_tools, run_uboot

BOOT_CMD = Path(__file__).resolve().parents[2] / "image-build" / "boot" / "boot.cmd"
FDTFILE = "broadcom/bcm2837-rpi-3-b-plus.dtb"
FDT_ADDR_R = "0x40100000"  # between qemu's tree (0x40000000) and scriptaddr (0x40200000)
REVISION = 0xA020D3  # Raspberry Pi 3 Model B+ 1.3
SERIAL = ("0x00000000", "0x1a2b3c4d")  # as the firmware writes it: two cells
# The shipped script at scriptaddr + 512 KiB: the wrapper itself runs from scriptaddr.
WRAPPER = f"""setenv fdtfile {FDTFILE}
setenv fdt_addr_r {FDT_ADDR_R}
setexpr mb_test_addr ${{scriptaddr}} + 0x80000
load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{mb_test_addr}} mynabox.scr
source ${{mb_test_addr}}
"""
SLOT_DTS = {
    # Upstream's DTBs have no /system.
    "A": '/dts-v1/;\n/ {\n model = "slot A"; compatible = "raspberrypi,3-model-b-plus";\n};\n',
    # A DTB that has a /system of its own: the firmware's values win.
    "B": '/dts-v1/;\n/ {\n model = "slot B";\n system { linux,revision = <0x1>; };\n};\n',
}

MISSING = missing_tools() + [t for t in ("dtc", "fdtput") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"missing: {', '.join(MISSING)}")


@pytest.fixture(scope="module")
def disk_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("dtbdisk")
    for slot in ("A", "B"):
        boot = work / f"slot-{slot}" / "boot"
        (boot / "dtbs" / "broadcom").mkdir(parents=True)
        (boot / "vmlinuz").write_bytes(f"kernel-{slot}\n".encode())
        (boot / "initrd.img").write_bytes(b"i" * 5)
        dts = work / f"slot-{slot}.dts"
        dts.write_text(SLOT_DTS[slot])
        subprocess.run(
            ["dtc", "-I", "dts", "-O", "dtb", "-o", str(boot / "dtbs" / FDTFILE), str(dts)], check=True
        )
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
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,revision", f"{REVISION:x}"], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,serial", *SERIAL], check=True)
    return dtb


def boot(template: Path, tmp_path: Path, slot: str, dtb: Path | None) -> str:
    path = tmp_path / "disk.img"
    path.write_bytes(template.read_bytes())
    disk = Disk(path)
    state = bs.set_primary(bs.INITIAL, slot)
    disk.write_fat("bootstate.0", bs.encode(state), tmp_path)
    run = run_uboot(disk, dtb=dtb)
    console = run.console
    assert "resetting" in console, console
    # The slot's DTB, at the board's fdt_addr_r, is what booti was given.
    assert re.search(rf"mynabox: slot {slot}: kernel, .*, device tree {FDT_ADDR_R};", console), console
    return console


def dtb_line(console: str) -> str:
    found = re.search(r"mynabox: device tree .*", console)
    assert found is not None, console
    return found.group(0)


def test_firmware_revision_and_serial_reach_an_upstream_dtb(
    disk_template: Path, firmware_dtb: Path, tmp_path: Path
) -> None:
    line = dtb_line(boot(disk_template, tmp_path, "A", firmware_dtb))
    assert line == (
        f"mynabox: device tree {FDTFILE}: copied from the firmware: linux,revision linux,serial; "
        f"/system/linux,revision 0x{REVISION:08X}"
    )


def test_firmware_values_replace_a_dtbs_own(disk_template: Path, firmware_dtb: Path, tmp_path: Path) -> None:
    line = dtb_line(boot(disk_template, tmp_path, "B", firmware_dtb))
    assert line.endswith(f"linux,revision linux,serial; /system/linux,revision 0x{REVISION:08X}"), line


def test_a_firmware_tree_without_system_copies_nothing_and_boots_on(
    disk_template: Path, tmp_path: Path
) -> None:
    console = boot(disk_template, tmp_path, "A", None)
    assert (
        dtb_line(console)
        == f"mynabox: device tree {FDTFILE}: copied from the firmware:; /system/linux,revision none"
    )
