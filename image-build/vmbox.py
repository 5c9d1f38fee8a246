"""The emulated box: the built image under qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG), booted as a Pi
boots after its firmware: Debian's U-Boot, the release the image ships (trixie's u-boot-qemu, its qemu_arm64
as qemu's -bios; scripts/u-boot-qemu.pin), runs the image's own boot.scr, which picks a slot from the two
boot-state copies on the FAT partition and sources that slot's own second stage (/boot/mynabox-boot.scr),
which loads the slot's kernel, initramfs (and the board's device tree where it names one; qemu's otherwise).
Around it, on the host: the broker (mosquitto, TLS), the reference summary service and the gateway's
receiver, and a USB card reader (qemu's usb-ccid) whose slot the test feeds over VSCard.

`launch(options)` is a context manager: everything it starts (qemu, the host's services, their log files)
is registered on one ExitStack and ended on the way out, whatever happened. The boot test
(image-build/boot-test.py), the update test (image-build/update-test.py) and the HIL suite against the
emulated box import it. Runs as root (debugfs on the test copy) with the project's venv on sys.path.

The test copy of the image differs from the built one only by what the test adds: gpio-sim and i2c-stub
modules with a unit that makes a Pi-shaped GPIO chip (never in the image), the test vehicle's identity on
the FAT partition (`mynabox provision write`, as a workshop does), and cmdline-extra.env on the FAT with
the test's kernel words (a root shell on the serial console for the checks; the second stage appends them).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.keyfiles import save_private_key, save_public_key
from mynabox_testkit.broker import BrokerTls, Mosquitto
from mynabox_testkit.ports import free_port
from mynabox_testkit.tlsfiles import make_test_pki
from support.bootdisk import UBOOT_BIN, UBOOT_RELEASE, uboot_missing  # tests/ is on sys.path (its scripts)

HERE = Path(__file__).resolve().parent
DEVICE_ID = "amb-qemu"
READY = "Started mynabox.service"
FIRSTBOOT_OK = "Finished mynabox-firstboot.service"
# Each boot passes through U-Boot (UBOOT_BIN: the release the image ships, scripts/u-boot-qemu.pin, as the CI
# tests of the boot scripts) and boot.scr, which says which slot it loads.
SLOT_LINE = re.compile(r"mynabox: booting slot ([AB]) ")
FAILED = ("Failed to start mynabox.service", "Failed to start mynabox-firstboot.service", "end Kernel panic")
# The test's kernel words (the slot's second stage appends cmdline-extra.env's mb_extra): the journal on the
# console and a root shell on it (systemd.debug_shell) for the checks. A card without the file boots as built.
DEBUG_CMDLINE = "systemd.show_status=1 systemd.journald.forward_to_console=1 systemd.debug_shell=ttyAMA0"
MACHINE = ["-cpu", "cortex-a72", "-smp", "2", "-m", "1024"]
# GPIO: a gpio-sim chip built out of tree (gpio-sim/build-module.sh) for this copy only, named like the
# Pi 3 B+'s GPIO block (its DTB's line names, from dtb-facts.json); -M virt's own PL061 is taken out of the
# guest's device tree so the simulated chip is gpiochip0, as the Pi's is, and /system/linux,revision is
# set as the Pi's firmware sets it (gpiozero reads the board from it). Buttons are pressed by pulling the
# simulated inputs (sim_gpioN/pull); the outputs the daemon drives read at sim_gpioN/value.
SIM = "/sys/devices/platform/gpio-sim.0/gpiochip0"
PI_REVISION = "a020d3"  # Raspberry Pi 3 Model B+ 1.3
SIM_BOARD = "bcm2837-rpi-3-b-plus"
# I2C: i2c-stub (built out of tree with gpio-sim) gives the board a bus, /dev/i2c-0, with one stub chip
# that is not the OLED's address: luma's real ssd1306 driver finds no display there.
I2C_STUB_ADDR = 0x50
DISPLAY = {
    "dummy": '[display]\ndriver = "dummy"\n',
    # A vehicle file names the driver only (provision refuses the bus and the address: the board's); the
    # emulated board's bus, i2c-0, goes into the test copy's config in the guest (boot-test.py, test mode).
    "ssd1306": '[display]\ndriver = "ssd1306"\n',
}


@dataclass(frozen=True)
class Options:
    out: Path  # the build's outputs (the .img.xz and its manifest)
    keep: Path | None = None  # the work files (card image, console log) stay here
    oled: str = "dummy"
    modules: Path | None = None  # gpiosim.ko and i2c-stub.ko for the image's kernel
    replace: tuple[tuple[Path, str], ...] = ()  # (local file, path in root A) swapped into the test copy
    debugfs: str = ""  # more debugfs commands on the test copy's root A (the update test's keyring)
    timeout: float = 1800.0  # the first boot to READY
    step_timeout: float = 600.0  # each later step
    extra_card_bytes: int = 512 * 1024 * 1024  # a bigger "card": the state partition grows into it


@dataclass
class Box:
    """A launched box and the host's side of it."""

    options: Options
    work: Path
    image: Path  # the test copy of the card, as qemu's virtio disk
    console: Console
    broker: Mosquitto
    receive: subprocess.Popen[bytes]
    received: Path  # the receiver's opened messages (JSON)
    ccid_port: int  # the usb-ccid slot's VSCard socket
    state_before: int  # the state partition's size as built
    keys: list[bytes]  # the provisioned secrets (must not stay readable on the FAT)
    figures: dict[str, float | int | str] = field(default_factory=dict)

    def check(self, name: str, ok: bool) -> bool:
        """Records a check's outcome as a figure (seconds since power-on, or "failed") and prints it."""
        self.figures[name] = self.console.elapsed() if ok else "failed"
        print(
            f"boot-test: {name}: {'ok at ' + str(self.figures[name]) + ' s' if ok else 'FAILED'}", flush=True
        )
        return ok

    def sh(self, command: str, timeout: float = 180.0) -> str:
        """`command` in the guest's root shell, its output as plain lines ("" if the shell did not answer)."""
        return plain(self.console.sh(command, timeout))


def artifacts(out: Path) -> Path:
    images = sorted(out.glob("mynabox-*-arm64.img.xz"))
    if not images:
        raise SystemExit(f"boot-test: no image in {out} (run `make image` first)")
    return images[-1]


def unpack(img_xz: Path, image: Path) -> None:
    """The card image, sparse (the empty slot B and the free space stay holes)."""
    with image.open("wb") as f, subprocess.Popen(["xz", "-dc", str(img_xz)], stdout=subprocess.PIPE) as xz:
        assert xz.stdout is not None
        while block := xz.stdout.read(1 << 20):
            if block.count(0) == len(block):
                f.seek(len(block), os.SEEK_CUR)
            else:
                f.write(block)
        f.truncate()
    if xz.returncode != 0:
        raise SystemExit("boot-test: xz failed")


def vehicle(work: Path, mqtt_port: int, summary_port: int, oled: str) -> tuple[Path, list[bytes]]:
    d = work / "vehicle"
    make_test_pki(
        d / "mqtt", server_names=("10.0.2.2", "localhost", "127.0.0.1"), clients=(DEVICE_ID, "gateway")
    )
    make_test_pki(d / "summary", server_names=("10.0.2.2", "localhost"), clients=(DEVICE_ID,))
    gateway = ec.generate_private_key(ec.SECP256R1())
    save_public_key(d / "gateway.pem", gateway)
    save_private_key(work / "gateway.key", gateway)
    device = ec.generate_private_key(ec.SECP256R1())
    save_private_key(d / "device-key.pem", device)
    (work / "device-keys").mkdir(exist_ok=True)
    save_public_key(work / "device-keys" / f"{DEVICE_ID}.pem", device)
    (d / "audit-key").write_bytes(secrets.token_bytes(32))
    (d / "vehicle.toml").write_text(
        f"""[device]
id = "{DEVICE_ID}"
[mqtt]
host = "10.0.2.2"
port = {mqtt_port}
ca_file = "mqtt/ca.pem"
client_cert = "mqtt/client-{DEVICE_ID}.pem"
client_key = "mqtt/client-{DEVICE_ID}.key"
[summary]
url = "https://10.0.2.2:{summary_port}"
ca_file = "summary/ca.pem"
client_cert = "summary/client-{DEVICE_ID}.pem"
client_key = "summary/client-{DEVICE_ID}.key"
[sealing]
gateway_public_key = "gateway.pem"
device_key = "device-key.pem"
[audit]
key = "audit-key"
{DISPLAY[oled]}"""
    )
    keys = [
        d / "device-key.pem",
        d / "mqtt" / f"client-{DEVICE_ID}.key",
        d / "summary" / f"client-{DEVICE_ID}.key",
        d / "audit-key",
    ]
    return d / "vehicle.toml", [k.read_bytes() for k in keys]


def partition(image: Path, index: int) -> tuple[int, int]:
    """(offset, size) in bytes of MBR partition `index` (0-based)."""
    with image.open("rb") as f:
        mbr = f.read(512)
    start, count = struct.unpack_from("<II", mbr, 446 + 16 * index + 8)
    return start * 512, count * 512


def fat_put(image: Path, name: str, data: bytes, work: Path) -> None:
    """A file on the card's FAT partition (mtools on the partition's offset: no mount)."""
    offset, _ = partition(image, 0)
    local = work / f"fat-{name}"
    local.write_bytes(data)
    subprocess.run(["mcopy", "-o", "-i", f"{image}@@{offset}", str(local), f"::{name}"], check=True)
    local.unlink()


def fat_get(image: Path, name: str) -> bytes | None:
    offset, _ = partition(image, 0)
    done = subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::{name}"], capture_output=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def edit_root(image: Path, work: Path, replace: tuple[tuple[Path, str], ...], commands: str = "") -> None:
    """The test copy only: `replace` swaps files of root A for local ones (to try a fix without a rebuild),
    and `commands` (debugfs's) add the test's own files, with debugfs on the partition cut out of the copy
    and put back."""
    if not replace and not commands:
        return
    offset, size = partition(image, 1)
    part = work / "root-a.ext4"
    dd = ["dd", "bs=1M", "status=none", "iflag=skip_bytes,count_bytes", "oflag=seek_bytes"]
    subprocess.run(
        [*dd, f"if={image}", f"of={part}", f"skip={offset}", f"count={size}", "conv=sparse"], check=True
    )
    script = work / "edit.debugfs"
    script.write_text(
        commands
        + "".join(
            f"cd {os.path.dirname(g)}\nrm {os.path.basename(g)}\nwrite {local} {os.path.basename(g)}\n"
            for local, g in replace
        )
    )
    subprocess.run(["debugfs", "-w", "-f", str(script), str(part)], check=True, capture_output=True)
    fsck = subprocess.run(["e2fsck", "-fn", str(part)], capture_output=True, text=True, check=False)
    if fsck.returncode != 0:
        raise SystemExit(f"boot-test: root A damaged by the edit: {fsck.stdout[-500:]}")
    subprocess.run([*dd, f"if={part}", f"of={image}", f"seek={offset}", "conv=notrunc,sparse"], check=True)
    part.unlink()


def kernel_release(out: Path) -> str:
    """The image's kernel release (e.g. 6.12.118+deb13-arm64), from its manifest."""
    manifest = json.loads(next(out.glob("mynabox-*-arm64-manifest.json")).read_text())
    found = re.search(r"linux-image-(\d[^\s\"]*-arm64)", json.dumps(manifest))
    if found is None:
        raise SystemExit("boot-test: no linux-image-<release> in the manifest")
    return found.group(1)


def test_modules(out: Path, given: Path | None) -> Path:
    """gpiosim.ko and i2c-stub.ko for the image's kernel: built once into the image cache (minutes)."""
    krel = kernel_release(out)
    modules = given or Path(os.environ.get("MYNABOX_IMAGE_CACHE", HERE / "cache"), "kmod", krel)
    modules.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time: image tests started together each built them (≈ 30 min of CPU apiece under load).
    with (modules.parent / f".{krel}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (modules / "gpiosim.ko").exists() or not (modules / "i2c-stub.ko").exists():
            print(
                f"boot-test: building gpio-sim and i2c-stub for {krel} in {modules} (once: minutes)",
                flush=True,
            )
            subprocess.run([HERE / "gpio-sim/build-module.sh", krel, modules], check=True)
    return modules


def test_hardware_setup(work: Path, modules: Path) -> str:
    """debugfs commands adding the simulated GPIO chip and I2C bus to the test copy: the modules, the script
    that loads them and makes the chip through configfs, and a unit that runs it before the daemon."""
    facts = json.loads((HERE / "dtb-facts.json").read_text())
    names = facts["dtbs"][SIM_BOARD]["gpio_line_names"]
    setup = work / "mynabox-test-hw"
    setup.write_text(
        "#!/bin/sh\n"
        "# mynabox boot test copy only (never in the image): gpio-sim shaped like the Pi 3 B+'s GPIO block.\n"
        "set -eu\n"
        "modprobe configfs\n"
        "mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config\n"
        "insmod /usr/local/lib/mynabox-test/gpiosim.ko\n"
        f"insmod /usr/local/lib/mynabox-test/i2c-stub.ko chip_addr=0x{I2C_STUB_ADDR:02x}\n"
        "d=/sys/kernel/config/gpio-sim/pi\n"
        "mkdir -p $d/bank0\n"
        f"echo {len(names)} > $d/bank0/num_lines\n"
        "echo pinctrl-bcm2835 > $d/bank0/label\n"
        + "".join(f"mkdir $d/bank0/line{i}\necho {n} > $d/bank0/line{i}/name\n" for i, n in enumerate(names))
        + "echo 1 > $d/live\n"
        "udevadm settle\n"
    )
    setup.chmod(0o755)
    unit = work / "mynabox-test-hw.service"
    unit.write_text(
        "[Unit]\n"
        "Description=mynabox boot test only: gpio-sim named like the Pi 3 B+'s GPIO block; i2c-stub\n"
        "DefaultDependencies=no\n"
        "After=systemd-udevd.service\n"
        "Before=mynabox.service\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=/usr/local/sbin/mynabox-test-hw\n"
    )
    unit.chmod(0o644)
    return (
        "mkdir /usr/local/lib/mynabox-test\n"
        "cd /usr/local/lib/mynabox-test\n"
        f"write {modules / 'gpiosim.ko'} gpiosim.ko\n"
        f"write {modules / 'i2c-stub.ko'} i2c-stub.ko\n"
        "cd /usr/local/sbin\n"
        f"write {setup} mynabox-test-hw\n"
        "cd /etc/systemd/system\n"
        f"write {unit} mynabox-test-hw.service\n"
        "mkdir mynabox.service.wants\n"
        "cd mynabox.service.wants\n"
        "symlink mynabox-test-hw.service /etc/systemd/system/mynabox-test-hw.service\n"
    )


def guest_dtb(qemu: str, work: Path) -> Path:
    """-M virt's device tree without its PL061 (and the gpio-keys on it), with /system/linux,revision; qemu
    hands it to U-Boot, which passes it on to the kernel (boot.scr: the board names no device tree)."""
    dtb = work / "virt.dtb"
    subprocess.run([qemu, "-M", f"virt,dumpdtb={dtb}", *MACHINE, "-nodefaults", "-display", "none"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["fdtput", "-r", str(dtb), "/gpio-keys", "/pl061@9030000"], check=True)
    subprocess.run(["fdtput", "-c", str(dtb), "/system"], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,revision", PI_REVISION], check=True)
    return dtb


def qemu_argv(qemu: str, image: Path, dtb: Path, ccid_port: int) -> list[str]:
    return [
        qemu, "-M", "virt", *MACHINE, "-nographic", "-dtb", str(dtb), "-bios", str(UBOOT_BIN),
        "-drive", f"file={image},format=raw,if=virtio",
        "-netdev", "user,id=net0",
        "-device", "virtio-net-pci,netdev=net0,romfile=",  # no option ROM (U-Boot needs none)
        "-device", "i6300esb",
        # The USB card reader: a CCID reader on an xHCI bus, its slot fed by the test over VSCard.
        "-device", "qemu-xhci,id=xhci", "-device", "usb-ccid,bus=xhci.0",
        "-chardev", f"socket,id=ccid,host=127.0.0.1,port={ccid_port},server=on,wait=off",
        "-device", "ccid-card-passthru,chardev=ccid",
    ]  # fmt: skip


class Console:
    """The guest's serial console: all it prints goes to console.log and is searched here; lines written to it
    go to the test boot's root shell (systemd.debug_shell on the same serial port)."""

    def __init__(self, argv: list[str], log: Path, t0: float) -> None:
        self._argv = argv
        self._log = log.open("wb")
        self._data = bytearray()
        self._lock = threading.Lock()
        self._n = 0
        self.t0 = t0
        self._start()

    def _start(self) -> None:
        self._vm = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._pump_thread = threading.Thread(target=self._pump, args=(self._vm,), daemon=True)
        self._pump_thread.start()

    def _pump(self, vm: subprocess.Popen[bytes]) -> None:
        assert vm.stdout is not None
        fd = vm.stdout.fileno()
        while chunk := os.read(fd, 65536):
            self._log.write(chunk)
            self._log.flush()
            with self._lock:
                self._data += chunk

    def _stop(self) -> None:
        self._vm.kill()
        self._vm.wait()
        self._pump_thread.join(timeout=10)
        for pipe in (self._vm.stdin, self._vm.stdout):
            if pipe is not None:
                pipe.close()

    def power_cut(self, while_off: Callable[[], None] | None = None) -> int:
        """Power off at once (qemu killed: the card keeps what its writes had reached) and on again; the
        console's text goes on in the same log. `while_off` runs between (the card is free to edit).
        Returns the console's offset at the power-on."""
        self._stop()
        with self._lock:
            self._data += b"\n[vmbox: power cut]\n"
            on = len(self._data)
        if while_off is not None:
            while_off()
        self._start()
        return on

    def alive(self) -> bool:
        return self._vm.poll() is None

    def close(self) -> None:
        """qemu ended, its output read to the end, the log closed."""
        self._stop()
        self._log.close()

    def mark(self) -> int:
        with self._lock:
            return len(self._data)

    def text(self, since: int = 0) -> str:
        with self._lock:
            return self._data[since:].decode(errors="replace")

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def wait(self, wanted: str, timeout: float, since: int = 0, fail: tuple[str, ...] = ()) -> int | None:
        """Offset just past the first `wanted` after `since`, or None at a `fail` string or the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._vm.poll() is None:
            text = self.text(since)
            if (i := text.find(wanted)) >= 0:
                return since + len(text[: i + len(wanted)].encode(errors="replace"))
            if any(bad in text for bad in fail):
                return None
            time.sleep(0.2)
        return None

    def sh(self, command: str, timeout: float = 180.0) -> str | None:
        """Runs `command` in the guest's root shell; its output (mixed with console messages) or None."""
        self._n += 1
        n = self._n
        since = self.mark()
        assert self._vm.stdin is not None
        # The tty echoes "@@$((n+0))@@" as typed; only the shell's output reads "@@n@@".
        try:
            self._vm.stdin.write(f"{command}; echo @@$(({n}+0))@@\n".encode())
            self._vm.stdin.flush()
        except BrokenPipeError:  # qemu has exited
            return None
        end = self.wait(f"@@{n}@@", timeout, since)
        return None if end is None else self.text(since)[: end - since]

    def slots(self, since: int = 0) -> list[str]:
        """The slots boot.scr loaded, in order, since `since`."""
        return SLOT_LINE.findall(self.text(since))


def plain(out: str | None) -> str:
    """The shell's output as lines: without its escape sequences (bracketed paste) and carriage returns."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out or "").replace("\r", "\n")


def diagnose(console: Console) -> None:
    print("boot-test: the daemon's unit and journal, from the guest:")
    out = console.sh(
        "systemctl status --no-pager -l mynabox.service pcscd.service | cat; "
        "journalctl -b --no-pager -o short-monotonic -u mynabox.service -u pcscd.service | tail -n 80",
        timeout=300,
    )
    print(out if out is not None else "(the guest's shell did not answer)")


def _popen_logged(stack: contextlib.ExitStack, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A host-side helper whose output goes to `log`; terminated (then killed) and its log closed on exit."""
    out = stack.enter_context(log.open("wb"))
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def end() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(end)
    return proc


def prepare_card(options: Options, work: Path, figures: dict[str, Any]) -> tuple[Path, int]:
    """The test copy of the card: unpacked, grown, the test's hardware modules in root A. Returns the image
    and the state partition's size as built."""
    image = work / "card.img"
    t0 = time.monotonic()
    unpack(artifacts(options.out), image)
    state_before = partition(image, 3)[1]
    os.truncate(image, image.stat().st_size + options.extra_card_bytes)
    figures["unpack_s"] = round(time.monotonic() - t0, 1)
    modules = test_modules(options.out, options.modules)
    t0 = time.monotonic()
    edit_root(image, work, options.replace, test_hardware_setup(work, modules) + options.debugfs)
    figures["root_edited_s"] = round(time.monotonic() - t0, 1)
    fat_put(image, "cmdline-extra.env", f"mb_extra={DEBUG_CMDLINE}\n".encode(), work)
    return image, state_before


@contextlib.contextmanager
def launch(options: Options, on_card: Callable[[Path], None] | None = None) -> Iterator[Box]:
    """Prepares the card, provisions it, starts the host's services and powers the box on. Everything
    started ends on exit. `on_card(image)` sees the prepared card before the power-on (the update test
    makes its bundles from the test copy's root A there)."""
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        raise SystemExit("boot-test: qemu-system-aarch64 missing (apt-get install qemu-system-arm)")
    missing = uboot_missing()
    if missing is not None:
        raise SystemExit(f"boot-test: missing {missing}")
    work = options.keep or Path(tempfile.mkdtemp(prefix="mynabox-boot-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"u_boot": UBOOT_RELEASE}
    print(f"boot-test: U-Boot {UBOOT_RELEASE} ({UBOOT_BIN})", flush=True)
    with contextlib.ExitStack() as stack:
        image, state_before = prepare_card(options, work, figures)
        if on_card is not None:
            on_card(image)
        mqtt_port, summary_port, ccid_port = free_port(), free_port(), free_port()
        vehicle_file, keys = vehicle(work, mqtt_port, summary_port, options.oled)
        v = vehicle_file.parent
        py = [sys.executable, "-m", "mynabox.cli"]
        t0 = time.monotonic()
        done = subprocess.run([*py, "provision", "write", str(vehicle_file), str(image)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        figures["provision_s"] = round(time.monotonic() - t0, 1)
        if done.returncode != 0:
            raise SystemExit(f"boot-test: provision write failed: {done.stderr.strip()}")
        figures["fat_fragments_before"] = leaked(image, keys)

        # The fleet's side on the host: the broker, the reference summary service, the gateway's receiver.
        broker = stack.enter_context(
            Mosquitto(
                BrokerTls(v / "mqtt/ca.pem", v / "mqtt/server.pem", v / "mqtt/server.key"),
                work / "broker",
                port=mqtt_port,
            )
        )
        _popen_logged(
            stack,
            [*py, "refsvc", "--port", str(summary_port), "--cert", str(v / "summary/server.pem"),
             "--key", str(v / "summary/server.key"), "--client-ca", str(v / "summary/ca.pem")],
            work / "refsvc.log",
        )  # fmt: skip
        received = work / "received"
        received.mkdir(exist_ok=True)
        receive = _popen_logged(
            stack,
            [*py, "receive", "--broker", f"127.0.0.1:{mqtt_port}", "--ca", str(v / "mqtt/ca.pem"),
             "--cert", str(v / "mqtt/client-gateway.pem"), "--key", str(v / "mqtt/client-gateway.key"),
             "--gateway-key", str(work / "gateway.key"), "--device-keys", str(work / "device-keys"),
             "--json-out", str(received), "--state-dir", str(work)],
            work / "receive.log",
        )  # fmt: skip

        argv = qemu_argv(qemu, image, guest_dtb(qemu, work), ccid_port)
        print("boot-test:", " ".join(argv), flush=True)
        console = Console(argv, work / "console.log", time.monotonic())
        stack.callback(console.close)
        box = Box(options, work, image, console, broker, receive, received, ccid_port, state_before, keys)
        box.figures.update(figures)
        yield box


def exit_code(ok: bool, work: Path, keep: Path | None) -> int:
    """An image test's exit status; its work files (card, console log) go unless kept or it failed."""
    if keep is None and ok:
        shutil.rmtree(work)
    return 0 if ok else 1


def script(name: str) -> ModuleType:
    """image-build/<name>.py (named with dashes) as a module: the scripts build on one another's steps."""
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def boot_test() -> ModuleType:
    """image-build/boot-test.py as a module: its checks and tap helpers, for the HIL and update tests."""
    return script("boot-test")


def fragments(secret: bytes) -> list[bytes]:
    if secret.startswith(b"-----BEGIN"):
        lines = secret.splitlines()[1:-1]
        body = b"".join(lines)
        return [
            p
            for p in (body[i : i + 16] for i in range(48, len(body) - 16, 8))
            if any(p in ln for ln in lines)
        ]
    return [secret[i : i + 16] for i in range(0, len(secret) - 15, 8)]


def leaked(image: Path, keys: list[bytes]) -> int:
    """Key fragments found in the FAT partition's bytes (the state partition holds the keys by design)."""
    wanted = [f for k in keys for f in fragments(k)]
    offset, size = partition(image, 0)
    with image.open("rb") as f:
        f.seek(offset)
        fat = f.read(size)
    return sum(1 for w in wanted if w in fat)
