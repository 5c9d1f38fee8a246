"""The early watchdog of a trial boot, under Debian's U-Boot in qemu with the emulated box's i6300esb: the
slot's own stage (image-build/boot/mynabox-boot.cmd) arms it just before `booti` when BOOT_ORDER says the
slot is on trial, so a new kernel that hangs before Linux's own watchdogs (softdog is loaded first of the
initramfs's init-top) is reset, spends its tries and falls back to the good slot by itself. A slot marked
good is never armed. Each slot's /boot/vmlinuz is a 48-byte arm64 Image that writes "K" to the UART and
then spins for ever: the hang.

The stage is the shipped one with its i6300esb time cut from 0x78 (120 s) to EARLY_S, so each reset takes
seconds; everything else is as shipped. The Pi's PM watchdog path is not run here (qemu's virt machine has
no PM block; README: only read)."""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from mynabox.update import bootstate as bs
from support.bootdisk import (
    STAGE_CMD,
    STUB_CMD,
    Disk,
    make_boot_script,
    make_disk,
    missing_tools,
    ran_boot_scr,
    run_command_until,
    run_until,
)

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"missing: {', '.join(missing_tools())}")

EARLY_S = 3
SHIPPED_TIME = "setenv mb_ewdt_s 0x78"
# arm64 Image header (booting.rst: branch to the code, text_offset 0, image_size, flags, magic "ARM\x64"),
# then (llvm-mc -triple=aarch64): mov x2, #0x09000000 (-M virt's PL011 data register); mov w3, #'K';
# strb w3, [x2]; mov w3, #'\n'; strb w3, [x2]; b .
CODE = (0xD2A12002, 0x52800963, 0x39000043, 0x52800143, 0x39000043, 0x14000000)
HEADER = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, 0x200000, 0xA, 0, 0, 0, 0x644D5241, 0)
HANGING_KERNEL = (HEADER + struct.pack(f"<{len(CODE)}I", *CODE)).ljust(4096, b"\0")
# An unarmed boot must outlast what an armed one takes (U-Boot to booti ≈ 2.5 s, then EARLY_S) well.
UNARMED_LIMIT = 2 * EARLY_S + 8
ARMED = f"on trial: early watchdog i6300esb armed (0x{EARLY_S:x} s)"


def hanging_slots(work: Path, dtb: Path | None = None) -> dict[str, Path]:
    """Both slots' trees: the hanging kernel, a marker initramfs and, for a Pi, the DTB U-Boot names."""
    trees = {}
    for slot in ("A", "B"):
        boot = work / f"slot-{slot}" / "boot"
        boot.mkdir(parents=True)
        (boot / "vmlinuz").write_bytes(HANGING_KERNEL)
        (boot / "initrd.img").write_bytes(b"i" * 5)
        if dtb is not None:
            (boot / "dtbs" / "broadcom").mkdir(parents=True)
            shutil.copy(dtb, boot / "dtbs" / "broadcom" / dtb.name)
        trees[slot] = work / f"slot-{slot}"
    return trees


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("early")
    trees = hanging_slots(work)
    shipped = STAGE_CMD.read_text()
    assert shipped.count(SHIPPED_TIME) == 1
    stage = work / "stage.cmd"
    stage.write_text(shipped.replace(SHIPPED_TIME, f"setenv mb_ewdt_s 0x{EARLY_S:x}"))
    make_boot_script(STUB_CMD, work / "boot.scr")
    fat = {"boot.scr": (work / "boot.scr").read_bytes()}
    return make_disk(work / "disk.img", work, fat, trees, stage=stage).path


@pytest.fixture
def disk(template: Path, tmp_path: Path) -> Disk:
    path = tmp_path / "disk.img"
    shutil.copyfile(template, path)
    return Disk(path)


def state_of(disk: Disk) -> bs.BootState:
    return bs.read(disk.read_fat("bootstate.0"), disk.read_fat("bootstate.1")).state


def kernel_ran(console: str) -> bool:
    """U-Boot started the slot's kernel and it wrote its mark; the stub never got control back."""
    after = console.partition("Starting kernel ...")[2]
    return after.lstrip().startswith("K\n") and "resetting" not in after


def test_a_trial_slot_whose_kernel_hangs_is_reset_spends_its_tries_and_falls_back(
    disk: Disk, tmp_path: Path
) -> None:
    trial = bs.set_primary(replace(bs.INITIAL, seq=7), "B")
    assert trial.order == ("B", "A") and trial.trial == "B"
    disk.write_fat("bootstate.0", bs.encode(trial), tmp_path)
    seconds = []
    for left in (2, 1, 0):
        run, ended = run_until(disk, limit=60)
        assert ran_boot_scr(run.console) and kernel_ran(run.console), run.console
        assert ARMED in run.console and "mynabox.earlywdt=i6300esb" in run.console, run.console
        assert ended, f"B's hanging kernel was not reset by the early watchdog: {run.console}"
        assert state_of(disk).b_left == left and state_of(disk).trial == "B"
        seconds.append(run.seconds)
    # B's tries are spent: A (good, not on trial) boots unarmed; its hang is not reset.
    run, ended = run_until(disk, limit=UNARMED_LIMIT)
    assert "mynabox: booting slot A " in run.console and kernel_ran(run.console), run.console
    assert "mynabox.earlywdt=off" in run.console and "early watchdog" not in run.console, run.console
    assert not ended, "a good slot's boot was reset: the early watchdog must never arm it"
    print(
        f"\ntrial boots reset by the early watchdog ({EARLY_S} s): {', '.join(f'{s:.1f}' for s in seconds)} s"
    )


def test_a_slot_marked_good_boots_unarmed_whatever_the_other_slot(disk: Disk, tmp_path: Path) -> None:
    good = bs.set_state(bs.set_primary(replace(bs.INITIAL, seq=7), "B"), "B", good=True)
    assert good.trial is None
    disk.write_fat("bootstate.0", bs.encode(good), tmp_path)
    run, ended = run_until(disk, limit=UNARMED_LIMIT)
    assert "mynabox: booting slot B " in run.console and kernel_ran(run.console), run.console
    assert "mynabox.earlywdt=off" in run.console and not ended, run.console


def test_a_trial_boot_on_a_board_without_the_watchdog_boots_unarmed_and_says_so(
    disk: Disk, tmp_path: Path
) -> None:
    disk.write_fat("bootstate.0", bs.encode(bs.set_primary(replace(bs.INITIAL, seq=7), "B")), tmp_path)
    run, ended = run_until(disk, limit=UNARMED_LIMIT, devices=())
    assert "mynabox: slot B: on trial: no early watchdog on this board" in run.console, run.console
    assert "mynabox.earlywdt=none" in run.console and kernel_ran(run.console) and not ended


# The Pi's path under Debian's own rpi_arm64 U-Boot on qemu's raspi3b: qemu models the BCM2835 PM block's
# registers but not its countdown (a write of RSTC with the password and WRCFG full reset resets at once, a
# wrong password is logged as a guest error and ignored). So this shows the stage's write reaches the PM
# block where a Pi 3's ARM sees it, with the password and the reset bit, on a trial boot only; not the 15 s.
# Opt-in: the image build's apt cache holds u-boot-rpi and the kernel package holds the DTB.
UBOOT_RPI = os.environ.get("MYNABOX_UBOOT_RPI", "")  # …/usr/lib/u-boot/rpi_arm64/u-boot.bin
PI_DTB = os.environ.get("MYNABOX_PI_DTB", "")  # …/broadcom/bcm2837-rpi-3-b.dtb of the image's kernel


@pytest.mark.skipif(
    not (Path(UBOOT_RPI).is_file() and Path(PI_DTB).is_file()),
    reason="set MYNABOX_UBOOT_RPI (rpi_arm64/u-boot.bin) and MYNABOX_PI_DTB (bcm2837-rpi-3-b.dtb)",
)
@pytest.mark.parametrize("on_trial", [True, False], ids=["trial", "good"])
def test_a_pi_3s_trial_boot_writes_its_pm_watchdog(on_trial: bool, tmp_path: Path) -> None:
    trees = hanging_slots(tmp_path, Path(PI_DTB))
    make_boot_script(STUB_CMD, tmp_path / "boot.scr")
    state = bs.set_primary(replace(bs.INITIAL, seq=7), "B")
    state = state if on_trial else bs.set_state(state, "B", good=True)
    fat = {"boot.scr": (tmp_path / "boot.scr").read_bytes(), "bootstate.0": bs.encode(state)}
    disk = make_disk(tmp_path / "sd.img", tmp_path, fat, trees)
    os.truncate(disk.path, 128 << 20)  # qemu's SD card: a power of two
    qemu = [
        "qemu-system-aarch64", "-M", "raspi3b", "-kernel", UBOOT_RPI, "-dtb", PI_DTB,
        "-drive", f"file={disk.path},if=sd,format=raw", "-serial", "null", "-serial", "stdio",
        "-display", "none", "-no-reboot", "-d", "guest_errors",
    ]  # fmt: skip
    run, ended = run_command_until(qemu, limit=40)
    console = run.console
    assert "mynabox: booting slot B from mmc 0:3" in console, console
    assert f"mynabox.earlywdt={'bcm2835-pm' if on_trial else 'off'} " in console, console
    assert "powermgt" not in console.lower() and "password" not in console.lower(), console
    if on_trial:  # reset by the RSTC write itself: before the stage's next line and booti
        assert ended and "Starting kernel" not in console, console
    else:
        assert not ended and "Starting kernel" in console, console
