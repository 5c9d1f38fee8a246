"""Small A/B boot disks for U-Boot under qemu, made without root: MBR by sfdisk, FAT by mkfs.vfat + mtools,
ext4 slots by `mke2fs -d`, each made in its own file and copied into place.

Layout as the image's: p1 FAT32 (boot.scr, the FAT stub; the two boot-state copies), p2 slot A, p3 slot B
(ext4, each with the second stage /boot/mynabox-boot.scr the stub sources, made from the shipped
image-build/boot/mynabox-boot.cmd unless a test puts its own there). `run_uboot` boots Debian's
u-boot-qemu on it (`-M virt -cpu cortex-a72 -bios …/qemu_arm64/u-boot.bin -nic none -no-reboot`) and
returns its console once the script resets (no kernel is needed: the slots hold markers, `booti` refuses
them and the stub resets, which ends qemu).

The U-Boot is the release the image ships (`UBOOT_BIN`, `UBOOT_RELEASE`): trixie's u-boot-qemu of the same
source version as the image's u-boot-rpi, pinned in scripts/u-boot-qemu.pin and put in place by
scripts/fetch-u-boot-qemu (from scripts/install-deps.sh), not the host's own u-boot-qemu (Debian 12's is an
older release). image-build/vmbox.py boots the emulated box with the same one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UBOOT_PIN = REPO / "scripts" / "u-boot-qemu.pin"


def _pinned(key: str) -> str:
    for line in UBOOT_PIN.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name == key:
            return value.strip()
    raise LookupError(f"{UBOOT_PIN}: no {key}")


UBOOT_RELEASE = _pinned("UBOOT_QEMU_VERSION")  # Debian's version, e.g. 2025.01-3+deb13u1
UBOOT_BIN = Path(_pinned("UBOOT_QEMU_DIR")) / "usr/lib/u-boot/qemu_arm64/u-boot.bin"
UBOOT_INSTALL = "sudo scripts/fetch-u-boot-qemu (scripts/install-deps.sh runs it)"
# What the shipped release prints: its banner, and standard boot's script method running /boot.scr from p1
# (2023.01's distro boot said "Found U-Boot script /boot.scr" instead).
UBOOT_BANNER = f"U-Boot {UBOOT_RELEASE} ("
BOOT_SCR_RAN = re.compile(r"^\*\* Booting bootflow '[^']*\.part_1' with script$", re.MULTILINE)
BOOT_DIR = REPO / "image-build" / "boot"
STUB_CMD = BOOT_DIR / "boot.cmd"  # → boot.scr on p1
STAGE_CMD = BOOT_DIR / "mynabox-boot.cmd"  # → /boot/mynabox-boot.scr in each slot
STAGE_PATH = "boot/mynabox-boot.scr"
SECTOR = 512
FAT_START = 2048  # sectors, as genimage.cfg
FAT_SECTORS = 40 * 2048  # 40 MiB: FAT32 needs >= 65525 clusters of 512 bytes
TOOLS = ("qemu-system-aarch64", "mkimage", "mkfs.vfat", "mcopy", "mke2fs", "sfdisk")


def missing_tools() -> list[str]:
    found = [t for t in TOOLS if shutil.which(t) is None]
    missing = uboot_missing()
    if missing:
        found.append(missing)
    return found


def ran_boot_scr(console: str) -> bool:
    """The console is the shipped release's, and it ran p1's /boot.scr."""
    return UBOOT_BANNER in console and BOOT_SCR_RAN.search(console) is not None


def uboot_missing() -> str | None:
    """None when the shipped release's U-Boot is in place, else what is missing and how to fetch it."""
    if UBOOT_BIN.is_file():
        return None
    return f"{UBOOT_BIN} (u-boot-qemu {UBOOT_RELEASE}, the release the image ships: {UBOOT_INSTALL})"


@dataclass(frozen=True)
class Disk:
    path: Path

    @property
    def fat(self) -> str:
        return f"{self.path}@@{FAT_START * SECTOR}"

    def read_fat(self, name: str) -> bytes | None:
        out = subprocess.run(
            ["mtype", "-i", self.fat, f"::{name}"], capture_output=True, check=False, timeout=30
        )
        return out.stdout if out.returncode == 0 else None

    def write_fat(self, name: str, data: bytes, work: Path) -> None:
        src = work / f".{name}.tmp"
        src.write_bytes(data)
        subprocess.run(["mcopy", "-o", "-i", self.fat, str(src), f"::{name}"], check=True, timeout=30)
        src.unlink()

    def fat_image(self, work: Path) -> str:
        """The FAT partition copied out, for fsck.vfat."""
        out = work / "p1.check.vfat"
        with self.path.open("rb") as src, out.open("wb") as dst:
            src.seek(FAT_START * SECTOR)
            dst.write(src.read(FAT_SECTORS * SECTOR))
        return str(out)

    def delete_fat(self, name: str) -> None:
        subprocess.run(["mdel", "-i", self.fat, f"::{name}"], check=True, timeout=30)


def make_boot_script(cmd: Path, out: Path) -> None:
    subprocess.run(
        ["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-d", str(cmd), str(out)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def put_stage(tree: Path, cmd: Path = STAGE_CMD) -> Path:
    """The second stage made from `cmd` into a slot's tree, as the build puts it into the root tree."""
    out = tree / STAGE_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    make_boot_script(cmd, out)
    return out


def make_disk(
    path: Path,
    work: Path,
    fat_files: dict[str, bytes],
    slots: dict[str, Path],
    slot_mib: int = 4,
    stage: Path | None = STAGE_CMD,
) -> Disk:
    """`slots` maps "A"/"B" to a directory tree for `mke2fs -d` (a slot left out stays zeroed). Each tree
    without a /boot/mynabox-boot.scr of its own gets one made from `stage` (None: the trees as given)."""
    slot_sectors = slot_mib * 2048
    a_start = FAT_START + FAT_SECTORS
    b_start = a_start + slot_sectors
    total = b_start + slot_sectors + 2048
    with path.open("wb") as f:
        f.truncate(total * SECTOR)
    table = (
        "label: dos\nlabel-id: 0x6d796e61\n"
        f"start={FAT_START}, size={FAT_SECTORS}, type=c, bootable\n"
        f"start={a_start}, size={slot_sectors}, type=83\n"
        f"start={b_start}, size={slot_sectors}, type=83\n"
    )
    subprocess.run(["sfdisk", "-q", str(path)], input=table.encode(), check=True, timeout=30)
    fat = work / "p1.vfat"
    fat.unlink(missing_ok=True)
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-n", "MYNA-BOOT", "-i", "6d796e61", "-C", str(fat), str(FAT_SECTORS // 2)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for name, data in fat_files.items():
        src = work / name
        src.write_bytes(data)
        subprocess.run(["mcopy", "-i", str(fat), str(src), f"::{name}"], check=True, timeout=30)
    _place(path, fat, FAT_START)
    for slot, start in (("A", a_start), ("B", b_start)):
        tree = slots.get(slot)
        if tree is None:
            continue
        if stage is not None and not (tree / STAGE_PATH).exists():
            put_stage(tree, stage)
        img = work / f"slot-{slot}.ext4"
        img.unlink(missing_ok=True)
        subprocess.run(
            [
                "mke2fs",
                "-q",
                "-t",
                "ext4",
                "-L",
                f"root-{slot.lower()}",
                "-d",
                str(tree),
                str(img),
                f"{slot_mib}M",
            ],
            check=True,
            capture_output=True,
            timeout=60,
            env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"},
        )
        _place(path, img, start)
    return Disk(path)


def _place(disk: Path, part: Path, start_sector: int) -> None:
    with disk.open("r+b") as out, part.open("rb") as src:
        out.seek(start_sector * SECTOR)
        shutil.copyfileobj(src, out, 1 << 20)


@dataclass(frozen=True)
class UbootRun:
    console: str
    seconds: float
    exit_code: int
    raw: bytes = b""  # the serial output as sent (a test kernel may write binary)


MACHINE = ("-M", "virt", "-cpu", "cortex-a72", "-m", "256", "-smp", "1")


WATCHDOG = ("-device", "i6300esb")  # the emulated box's hardware watchdog (image-build/vmbox.py)


def _qemu(disk: Disk, dtb: Path | None = None, devices: tuple[str, ...] = ()) -> list[str]:
    return [
        "qemu-system-aarch64", *MACHINE,
        "-bios", str(UBOOT_BIN), "-nic", "none", "-no-reboot", "-display", "none",
        "-serial", "stdio", "-monitor", "none",
        "-drive", f"if=virtio,format=raw,file={disk.path}",
        *(["-dtb", str(dtb)] if dtb is not None else []),
        *devices,
    ]  # fmt: skip


def run_until(disk: Disk, limit: float, devices: tuple[str, ...] = WATCHDOG) -> tuple[UbootRun, bool]:
    """One power-on that may never end by itself (a kernel that hangs): qemu runs until it exits (a reset,
    with -no-reboot) or `limit` seconds pass and it is killed. Returns the run and whether it ended."""
    return run_command_until(_qemu(disk, None, devices), limit)


def run_command_until(command: list[str], limit: float) -> tuple[UbootRun, bool]:
    """`run_until` for any qemu command line (another machine); its output and error both in the run."""
    start = time.monotonic()
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = proc.communicate(timeout=limit)
        ended = True
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        ended = False
    seconds = time.monotonic() - start
    text = out.decode("utf-8", "replace").replace("\r", "")
    return UbootRun(text, seconds, proc.returncode, out), ended


def machine_dtb(out: Path) -> Path:
    """qemu's own device tree for this machine (what U-Boot gets as its control tree), to edit with fdtput
    and hand back with `run_uboot(dtb=…)`, as a Pi's firmware hands U-Boot the tree it prepared."""
    subprocess.run(
        ["qemu-system-aarch64", *MACHINE, "-machine", f"dumpdtb={out}", "-nodefaults", "-display", "none"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # As with -bios qemu leaves them out (the boot test drops them too): a kernel given them hangs silently.
    subprocess.run(["fdtput", "-r", str(out), "/gpio-keys", "/pl061@9030000"], check=True, timeout=30)
    return out


def run_uboot(disk: Disk, timeout: float = 60.0, dtb: Path | None = None) -> UbootRun:
    """One power-on: U-Boot's distro boot finds boot.scr on p1 and runs it; the script's `reset` ends qemu.
    `dtb`: the device tree qemu hands U-Boot instead of its own."""
    start = time.monotonic()
    out = subprocess.run(
        _qemu(disk, dtb), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
    )
    seconds = time.monotonic() - start
    text = out.stdout.decode("utf-8", "replace").replace("\r", "")
    return UbootRun(text, seconds, out.returncode, out.stdout)


def cut_uboot(disk: Disk, marker: bytes, delay: float, timeout: float = 60.0, dtb: Path | None = None) -> str:
    """A power cut: qemu is killed `delay` seconds after `marker` appears on the console (the disk image
    keeps the sectors U-Boot's writes had reached). Returns the console up to the cut."""
    proc = subprocess.Popen(
        _qemu(disk, dtb), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    seen = b""
    end = time.monotonic() + timeout
    try:
        while marker not in seen:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk or time.monotonic() > end:
                break
            seen += chunk
        time.sleep(delay)
    finally:
        proc.kill()
        proc.wait()
    return seen.decode("utf-8", "replace").replace("\r", "")
