"""`make image-test`: boots the built image under qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG: no KVM for
arm64 on this host), with the image's own kernel and initrd, its own root and state partitions, provisioned
by `mynabox provision`, against a broker (mosquitto, TLS) and the reference summary service on the host.
Checks, each with its time printed:
  - the initramfs grows the state partition to the end of the bigger "card" and systemd grows its ext4;
  - the first boot takes the identity in (mynabox-firstboot.service succeeds);
  - the daemon reaches READY (systemd logs "Started mynabox.service" only after READY=1 for Type=notify),
    with the root mounted read-only (and writes to it refused);
  - the box connects to the broker on the host with its client certificate;
  - a virtual card in qemu's emulated USB reader (usb-ccid, a CCID reader libccid knows, with its
    ccid-card-passthru slot fed by the test over VSCard: tests/support/vscard.py) is read by the image's own
    pcscd + libccid (no vpcd anywhere), the lookup goes to the reference service, and the sealed summary
    that reaches the broker is opened by `mynabox receive`; the card is removed and another inserted from
    the test, and that second tap arrives too (the daemon's read-timing lines are printed);
  - the daemon stopped with SIGSTOP is killed and restarted by systemd's watchdog, and it logged no error;
  - PID 1 drives the hardware watchdog (qemu's i6300esb): a crashed kernel is reset by it, and the box
    comes back to READY (a second boot: nothing to grow, no identity left to take);
  - afterwards no fragment of a provisioned secret can be read from the FAT partition's bytes.
The tap needs the test copy's config in test mode (the virtual card's certificate is from the test CA):
`provision` refuses `device.test_mode`, so the test sets it in the guest after the first boot and restarts.
The test boot's kernel command line (the test's own: production boots from the FAT's cmdline.txt) adds a
root shell on the serial console (systemd.debug_shell) for the SIGSTOP step and, on a failure, the unit's
journal. Run as root (debugfs on the test copy) with the project's venv:
  .venv/bin/python image-build/boot-test.py [--out DIR] [--timeout S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.keyfiles import save_private_key, save_public_key
from mynabox_testkit.broker import BrokerTls, Mosquitto, free_port
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.tlsfiles import make_test_pki

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.vscard import VscardCard

HERE = Path(__file__).resolve().parent
DEVICE_ID = "amb-qemu"
READY = "Started mynabox.service"
FIRSTBOOT_OK = "Finished mynabox-firstboot.service"
# Matched on the journal's lines (forwarded to the console, no colour codes).
GROWN = "mynabox: grow-state: "
PROBE = "/usr/.mynabox-probe"  # check_layout's write to the read-only root, which must fail
DAEMON_ERROR = re.compile(r"\b(ERROR|CRITICAL|Traceback)\b")
FAILED = ("Failed to start mynabox.service", "Failed to start mynabox-firstboot.service", "end Kernel panic")
# GPIO: a gpio-sim chip built out of tree (gpio-sim/build-module.sh) for this copy only, named like the
# Pi 3 B+'s GPIO block (its DTB's line names, from dtb-facts.json); -M virt's own PL061 is taken out of the
# guest's device tree so the simulated chip is gpiochip0, as the Pi's is, and /system/linux,revision is
# set as the Pi's firmware sets it (gpiozero reads the board from it). The test presses buttons by pulling
# the simulated inputs (sim_gpioN/pull) and reads the outputs the daemon drives (sim_gpioN/value).
SIM = "/sys/devices/platform/gpio-sim.0/gpiochip0"
PI_REVISION = "a020d3"  # Raspberry Pi 3 Model B+ 1.3
SIM_BOARD = "bcm2837-rpi-3-b-plus"
# I2C: i2c-stub (built out of tree with gpio-sim) gives the board a bus, /dev/i2c-0, with one stub chip
# that is not the OLED's address: luma's real ssd1306 driver finds no display there.
I2C_STUB_ADDR = 0x50
# The display: luma's real ssd1306 on the i2c-stub bus (i2c-0 here, i2c-1 on a Pi), where nothing answers at
# 0x3c, needs a daemon that keeps working without its display; until the firmware degrades instead of
# stopping (issue 24's other half), the default is luma's dummy device, the only mock left in this config.
DISPLAY = {
    "dummy": '[display]\ndriver = "dummy"\n',
    "ssd1306": '[display]\ndriver = "ssd1306"\ni2c_port = 0\ni2c_address = 0x3c\n',
}
# qemu 7.2's usb-ccid discards any reader-to-host message over 384 bytes ("ccid_reserve_recv_buf: len larger
# then max (896>384)"), so the certificate's rest in one extended READ BINARY never reaches the guest; short
# reads of 256 bytes fit. A limit of the emulated reader: real CCID readers announce extended APDUs.
READER = '\\n[reader]\\nextended_apdu = "off"\\n'  # printf's escapes, in the guest (provision refuses it)
MACHINE = ["-cpu", "cortex-a72", "-smp", "2", "-m", "1024"]
TIMING = re.compile(r"mynabox\[\d+\]: .*read (?:delivered|result-shown) .*")


def artifacts(out: Path) -> tuple[Path, Path, Path]:
    images = sorted(out.glob("mynabox-*-arm64.img.xz"))
    if not images:
        raise SystemExit(f"boot-test: no image in {out} (run `make image` first)")
    name = images[-1].name.removesuffix(".img.xz")
    return images[-1], out / f"{name}.vmlinuz", out / f"{name}.initrd"


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


def partition(image: Path, index: int) -> tuple[int, int]:
    """(offset, size) in bytes of MBR partition `index` (0-based)."""
    with image.open("rb") as f:
        mbr = f.read(512)
    start, count = struct.unpack_from("<II", mbr, 446 + 16 * index + 8)
    return start * 512, count * 512


def leaked(image: Path, keys: list[bytes]) -> int:
    """Key fragments found in the FAT partition's bytes (the state partition holds the keys by design)."""
    wanted = [f for k in keys for f in fragments(k)]
    offset, size = partition(image, 0)
    with image.open("rb") as f:
        f.seek(offset)
        fat = f.read(size)
    return sum(1 for w in wanted if w in fat)


def edit_root(image: Path, work: Path, replace: list[tuple[Path, str]], commands: str = "") -> None:
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


class Console:
    """The guest's serial console: all it prints goes to console.log and is searched here; lines written to it
    go to the test boot's root shell (systemd.debug_shell on the same serial port)."""

    def __init__(self, vm: subprocess.Popen[bytes], log: Path, t0: float) -> None:
        self._vm = vm
        self._log = log.open("wb")
        self._data = bytearray()
        self._lock = threading.Lock()
        self._n = 0
        self.t0 = t0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self._vm.stdout is not None
        fd = self._vm.stdout.fileno()
        while chunk := os.read(fd, 65536):
            self._log.write(chunk)
            self._log.flush()
            with self._lock:
                self._data += chunk

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


def diagnose(console: Console) -> None:
    print("boot-test: the daemon's unit and journal, from the guest:")
    out = console.sh(
        "systemctl status --no-pager -l mynabox.service pcscd.service | cat; "
        "journalctl -b --no-pager -o short-monotonic -u mynabox.service -u pcscd.service | tail -n 80",
        timeout=300,
    )
    print(out if out is not None else "(the guest's shell did not answer)")


Check = Callable[[str, bool], bool]


def plain(out: str | None) -> str:
    """The shell's output as lines: without its escape sequences (bracketed paste) and carriage returns."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out or "").replace("\r", "\n")


def wait_for_summary(
    received: Path, receive: subprocess.Popen[bytes], timeout: float, holding: str
) -> dict[str, Any] | None:
    """The first opened message of kind summary the receiver wrote whose body holds `holding` (the tap's
    audit record comes too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and receive.poll() is None:
        for path in sorted(received.rglob("*.json")):
            doc: dict[str, Any] = json.loads(path.read_text())
            if doc.get("kind") == "summary" and holding in json.dumps(doc.get("body"), ensure_ascii=False):
                return doc
        time.sleep(0.5)
    return None


def pin_map() -> dict[str, int]:
    """The packaged pin map's BCM numbers (the daemon's default), by function."""
    import tomllib

    doc = tomllib.loads((HERE.parent / "firmware/mynabox/data/pins.toml").read_text(encoding="utf-8"))

    def offset(line: int | str) -> int:  # the map names lines as the kernel does ("GPIO17"): gpio-sim's offset
        return line if isinstance(line, int) else int(line.removeprefix("GPIO"))

    return {
        "consent": offset(doc["buttons"]["consent"]),
        "emergency": offset(doc["buttons"]["emergency"]),
        "led": offset(doc["led"]["status"]),
        "buzzer": offset(doc["buzzer"]["pin"]),
    }


def kernel_release(out: Path) -> str:
    """The image's kernel release (e.g. 6.12.118+deb13-arm64), from its manifest."""
    manifest = json.loads(next(out.glob("mynabox-*-arm64-manifest.json")).read_text())
    text = json.dumps(manifest)
    found = re.search(r"linux-image-(\d[^\s\"]*-arm64)", text)
    if found is None:
        raise SystemExit("boot-test: no linux-image-<release> in the manifest")
    return found.group(1)


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
    """-M virt's device tree without its PL061 (and the gpio-keys on it), with /system/linux,revision."""
    dtb = work / "virt.dtb"
    subprocess.run([qemu, "-M", f"virt,dumpdtb={dtb}", *MACHINE, "-nodefaults", "-display", "none"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["fdtput", "-r", str(dtb), "/gpio-keys", "/pl061@9030000"], check=True)
    subprocess.run(["fdtput", "-c", str(dtb), "/system"], check=True)
    subprocess.run(["fdtput", "-t", "x", str(dtb), "/system", "linux,revision", PI_REVISION], check=True)
    return dtb


def gpio_lines(console: Console, pins: dict[str, int]) -> dict[str, str]:
    """Each pin's line as the kernel reports it (gpio-sim's debugfs: consumer, direction and level, bias)."""
    out = plain(console.sh("cat /sys/kernel/debug/gpio"))
    base = re.search(r"GPIOs (\d+)-\d+, parent: platform/gpio-sim", out)
    lines = {}
    for name, pin in pins.items():
        found = base and re.search(rf"^\s*gpio-{int(base.group(1)) + pin}\s+\(([^)]*)\)\s+(\S+)", out, re.M)
        lines[name] = f"{found.group(2)} ({found.group(1).strip()})" if found else "?"
    return lines


def press(console: Console, pin: int, hold_s: float = 0.4) -> None:
    """A button to GND: the simulated line pulled down for `hold_s`, then up again."""
    console.sh(
        f"echo pull-down > {SIM}/sim_gpio{pin}/pull; sleep {hold_s}; echo pull-up > {SIM}/sim_gpio{pin}/pull"
    )


def consents_received(received: Path) -> list[str]:
    """The consent of every audit record the receiver opened."""
    found = []
    for path in sorted(received.rglob("*.json")):
        found += re.findall(r'"consent":\s*"([a-z-]+)"', path.read_text(errors="replace"))
    return found


def check_layout(console: Console, check: Check, state_before: int, card: int) -> bool:
    """The initramfs grew partition 4 to the card's end, the ext4 on it followed, the root is read-only."""
    grown = console.wait(GROWN, 0.1)
    line = console.text(grown or 0).splitlines()[0] if grown else "(no line)"
    print(f"boot-test: initramfs: {GROWN}{line.strip()}")
    out = console.sh(
        "echo part=$(( $(cat /sys/class/block/vda4/size) * 512 )); "
        "echo fs=$(( $(stat -f -c '%b * %S' /var/lib/mynabox) )); "
        "echo root=$(findmnt -n -o OPTIONS /); "
        f"touch {PROBE} 2>&1 | tail -n 1"
    )
    values = dict(re.findall(r"^(part|fs|root)=(\S+)$", plain(out), re.MULTILINE))
    part, fs = int(values.get("part", "0")), int(values.get("fs", "0"))
    print(f"boot-test: state partition {state_before >> 20} -> {part >> 20} MiB (card {card >> 20} MiB), "
          f"its ext4 {fs >> 20} MiB; root mounted {values.get('root', '?')}")  # fmt: skip
    ok = check("state_grown_s", part >= state_before + (500 << 20) and fs >= part * 9 // 10)
    root_ro = values.get("root", "").split(",")[0] == "ro" and "Read-only file system" in (out or "")
    return check("root_read_only_s", root_ro) and ok


def check_hardware_watchdog(console: Console, check: Check, timeout: float) -> bool:
    """PID 1 holds the hardware watchdog; a crashed kernel (sysrq c; Debian's kernel does not reboot on a
    panic: CONFIG_PANIC_TIMEOUT=0) stops its pings, the i6300esb resets the machine, and the box comes back:
    the second boot grows nothing, takes no identity (the FAT has none left) and the daemon is READY again."""
    out = console.sh(
        "echo wd=$(cat /sys/class/watchdog/watchdog0/identity),$(cat /sys/class/watchdog/watchdog0/state)"
    )
    held = re.findall(r"^wd=(.*)$", plain(out), re.MULTILINE)
    print("boot-test: hardware watchdog:", held[-1] if held else "(none)")
    time.sleep(5)  # let the journal settle before the crash
    since = console.mark()
    console.sh("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger", timeout=5)
    t_crash = time.monotonic()
    panic = console.wait("Kernel panic", 60, since)
    rebooted = None if panic is None else console.wait("Linux version", timeout, panic)
    if not check("hardware_watchdog_reset_s", rebooted is not None):
        return False
    print(f"boot-test: crash to reset {time.monotonic() - t_crash:.1f} s")
    assert rebooted is not None
    back = console.wait(READY, timeout, rebooted, fail=FAILED)
    second = console.text(rebooted)
    ok = check("ready_after_reset_s", back is not None)
    print(f"boot-test: crash to READY again {time.monotonic() - t_crash:.1f} s")
    ok &= check("second_boot_grows_nothing_s", "already fills" in second)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for READY")
    parser.add_argument("--step-timeout", type=float, default=600.0, help="seconds for each later check")
    parser.add_argument("--keep", type=Path, help="keep the work files (image, console log) here")
    parser.add_argument(
        "--oled",
        choices=sorted(DISPLAY),
        default="dummy",
        help="ssd1306: luma's real driver on the emulated I2C bus with no display on it (the degrade path)",
    )
    parser.add_argument(
        "--modules", type=Path, help="a directory with gpiosim.ko and i2c-stub.ko for the image's kernel"
    )
    parser.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="LOCAL=GUEST",
        help="put a local file in place of one in the test copy's root (try a fix without a rebuild)",
    )
    args = parser.parse_args()
    # SIGTERM (a killed run) must still end qemu and the host's services: turn it into an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures: dict[str, float | int | str] = {}
    img_xz, kernel, initrd = artifacts(args.out)
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        raise SystemExit("boot-test: qemu-system-aarch64 missing (apt-get install qemu-system-arm)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mynabox-boot-"))
    work.mkdir(parents=True, exist_ok=True)
    image = work / "card.img"
    t0 = time.monotonic()
    with image.open("wb") as f:
        xz = subprocess.Popen(["xz", "-dc", str(img_xz)], stdout=subprocess.PIPE)
        assert xz.stdout is not None
        while block := xz.stdout.read(1 << 20):
            if block.count(0) == len(block):
                f.seek(len(block), os.SEEK_CUR)  # keep the image sparse
            else:
                f.write(block)
        f.truncate()
        if xz.wait() != 0:
            raise SystemExit("boot-test: xz failed")
    state_before = partition(image, 3)[1]
    os.truncate(image, image.stat().st_size + 512 * 1024 * 1024)  # a bigger "card": the state partition grows
    figures["unpack_s"] = round(time.monotonic() - t0, 1)
    krel = kernel_release(args.out)
    modules = args.modules or Path(os.environ.get("MYNABOX_IMAGE_CACHE", HERE / "cache"), "kmod", krel)
    if not (modules / "gpiosim.ko").exists() or not (modules / "i2c-stub.ko").exists():
        print(
            f"boot-test: building gpio-sim and i2c-stub for {krel} in {modules} (once: minutes)", flush=True
        )
        subprocess.run([HERE / "gpio-sim/build-module.sh", krel, modules], check=True)
    t0 = time.monotonic()
    edit_root(image, work, [(Path(a).resolve(), b) for a, b in (r.split("=", 1) for r in args.replace)],
              test_hardware_setup(work, modules))  # fmt: skip
    figures["root_edited_s"] = round(time.monotonic() - t0, 1)

    mqtt_port, summary_port, ccid_port = free_port(), free_port(), free_port()
    vehicle_file, keys = vehicle(work, mqtt_port, summary_port, args.oled)
    v = vehicle_file.parent
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "provision", "write", str(vehicle_file), str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    figures["provision_s"] = round(time.monotonic() - t0, 1)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    figures["fat_fragments_before"] = leaked(image, keys)

    # The fleet's side on the host: the broker, the reference summary service, the gateway's receiver.
    broker = Mosquitto(BrokerTls(v / "mqtt/ca.pem", v / "mqtt/server.pem", v / "mqtt/server.key"),
                       work / "broker", port=mqtt_port)  # fmt: skip
    broker.start()
    py = [sys.executable, "-m", "mynabox.cli"]
    refsvc_log = (work / "refsvc.log").open("wb")
    refsvc = subprocess.Popen(
        [*py, "refsvc", "--port", str(summary_port), "--cert", str(v / "summary/server.pem"),
         "--key", str(v / "summary/server.key"), "--client-ca", str(v / "summary/ca.pem")],
        stdout=refsvc_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    (work / "received").mkdir(exist_ok=True)
    receive_log = (work / "receive.log").open("wb")
    receive = subprocess.Popen(
        [*py, "receive", "--broker", f"127.0.0.1:{mqtt_port}", "--ca", str(v / "mqtt/ca.pem"),
         "--cert", str(v / "mqtt/client-gateway.pem"), "--key", str(v / "mqtt/client-gateway.key"),
         "--gateway-key", str(work / "gateway.key"), "--device-keys", str(work / "device-keys"),
         "--json-out", str(work / "received"), "--state-dir", str(work)],
        stdout=receive_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    helpers: list[subprocess.Popen[bytes]] = [refsvc, receive]

    cmdline = (
        "root=LABEL=mynabox-root-a ro rootwait console=ttyAMA0 systemd.show_status=1 "
        "systemd.journald.forward_to_console=1 systemd.debug_shell=ttyAMA0"
    )
    argv = [
        qemu, "-M", "virt", *MACHINE, "-nographic", "-dtb", str(guest_dtb(qemu, work)),
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-drive", f"file={image},format=raw,if=virtio",
        "-netdev", "user,id=net0",
        "-device", "virtio-net-pci,netdev=net0,romfile=",  # no option ROM: direct kernel boot needs none
        "-device", "i6300esb",
        # The USB card reader: a CCID reader on an xHCI bus, its slot fed by the test over VSCard.
        "-device", "qemu-xhci,id=xhci", "-device", "usb-ccid,bus=xhci.0",
        "-chardev", f"socket,id=ccid,host=127.0.0.1,port={ccid_port},server=on,wait=off",
        "-device", "ccid-card-passthru,chardev=ccid",
    ]  # fmt: skip
    print("boot-test:", " ".join(argv), flush=True)
    result = 1
    vm = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    console = Console(vm, work / "console.log", time.monotonic())

    def check(name: str, ok: bool) -> bool:
        figures[name] = console.elapsed() if ok else "failed"
        print(f"boot-test: {name}: {'ok at ' + str(figures[name]) + ' s' if ok else 'FAILED'}", flush=True)
        return ok

    try:
        ready = console.wait(READY, args.timeout, fail=FAILED)
        if console.wait(FIRSTBOOT_OK, 0.1) is not None:
            print("boot-test: the first boot took the identity in")
        if not check("boot_to_ready_s", ready is not None):
            diagnose(console)
            print("boot-test: last console lines:")
            print("\n".join(console.text().splitlines()[-60:]))
            return 1
        assert ready is not None
        ok = check_layout(console, check, state_before, image.stat().st_size)
        # Test mode (the test CA) for the virtual card and short reads (READER), in the state partition's
        # config; then a restart. No consent default: the test presses the buttons.
        since = console.mark()
        config = "/var/lib/mynabox/identity/config.toml"
        console.sh(
            f"sed -i 's/^\\[device\\]$/[device]\\ntest_mode = true/' {config}"
            f" && printf '{READER}' >> {config} && systemctl restart mynabox.service"
        )
        ok &= check("test_mode_ready_s", console.wait(READY, args.step_timeout, since) is not None)
        deadline = time.monotonic() + args.step_timeout
        while f"as {DEVICE_ID}" not in broker.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        ok &= check("broker_connected_s", f"as {DEVICE_ID}" in broker.log())

        # GPIO: the daemon holds the simulated chip's lines through lgpio (the device node's group and mode
        # are the image's udev rule's), buttons as inputs, LED and buzzer as outputs.
        pins = pin_map()
        node = re.findall(
            r"^node=(.*)$", plain(console.sh("echo node=$(stat -c '%G %a' /dev/gpiochip0)")), re.M
        )
        print("boot-test: /dev/gpiochip0:", node[-1] if node else "?")
        ok &= check("gpiochip_group_gpio_s", bool(node) and node[-1] == "gpio 660")
        # The emulated I2C bus (i2c-stub) as the daemon's unit sees it: i2c-dev loaded, the image's rule.
        bus = re.findall(r"^i2c=(.*)$", plain(console.sh("echo i2c=$(stat -c '%G %a' /dev/i2c-0)")), re.M)
        print("boot-test: /dev/i2c-0:", bus[-1] if bus else "?")
        ok &= check("i2c_dev_group_i2c_s", bool(bus) and bus[-1] == "i2c 660")
        lines = gpio_lines(console, pins)
        print("boot-test: lines at READY (kernel debugfs):", lines)
        names = "|".join(f"GPIO{p}" for p in pins.values())
        info = plain(console.sh(f"command -v gpioinfo >/dev/null && gpioinfo | grep -E '\"({names})\"'"))
        for line in re.findall(r"^\s*line\s.*$", info, re.M):
            print("boot-test: gpioinfo:", " ".join(line.split()))
        ok &= check(
            "gpio_lines_held_s",
            all(lines[b].startswith("input,pull-up (lg)") for b in ("consent", "emergency"))
            and all(lines[o].startswith("output") and "(lg)" in lines[o] for o in ("led", "buzzer")),
        )
        # The outputs' levels, sampled in the guest every 20 ms through both taps.
        console.sh(
            "(for i in $(seq 3000); do echo $(cat "
            f"{SIM}/sim_gpio{pins['led']}/value {SIM}/sim_gpio{pins['buzzer']}/value); sleep 0.02; done"
            " > /run/mynabox-test-levels) >/dev/null 2>&1 & echo $! > /run/mynabox-test-levels.pid"
        )
        # Taps: the virtual card in the emulated USB reader, read by the guest's pcscd + libccid. The
        # reference service's record of the patient, opened at the receiver, shows the lookup went there.
        # 同意 is pressed before the first tap (it counts for the next read), 緊急 after the second read.
        drivers = plain(
            console.sh("echo drivers=$(ls /usr/lib/pcsc/drivers /usr/lib/pcsc/drivers/serial 2>&1)")
        )
        print(
            "boot-test: pcscd's drivers in the image:", " ".join(re.findall(r"^drivers=(.*)$", drivers, re.M))
        )
        ok &= check("no_vpcd_in_image_s", "ifd-ccid.bundle" in drivers and "vpcd" not in drivers)
        reader = VscardCard(VirtualMyNumberCard(patient("healthy").card_id), port=ccid_port).connect()
        for n, key in enumerate(("healthy", "warfarin-elderly"), 1):
            since = console.mark()
            if n == 1:
                press(console, pins["consent"])
            t_tap = time.monotonic()
            reader.insert(VirtualMyNumberCard(patient(key).card_id))
            if n == 2:
                time.sleep(5)  # the read takes ~0.1 s; the box then asks for consent
                press(console, pins["emergency"])
            drug = patient(key).prescriptions[0].drug_name
            # Bounded below step_timeout: without a consent press the box makes no lookup (timeout 60 s).
            summary = wait_for_summary(work / "received", receive, min(args.step_timeout, 180), drug)
            if check(f"usb_reader_tap{n}_received_s", summary is not None):
                figures[f"tap{n}_to_receiver_s"] = round(time.monotonic() - t_tap, 1)
                time.sleep(1)  # the timing lines follow the PUBACK
                for line in TIMING.findall(console.text(since)):
                    print("boot-test: daemon:", line.strip())
            else:
                ok = False
                print((work / "receive.log").read_text(errors="replace")[-800:])
                diagnose(console)
                break
            reader.remove()  # out of the field; the next patient's card goes in
            time.sleep(2)
        reader.close()
        # Each tap's consent, as its audit record at the receiver says: only a press could give them.
        consents = consents_received(work / "received")
        print("boot-test: consent of each read (audit records):", consents)
        ok &= check("consent_press_seen_s", "oral-consent" in consents)
        ok &= check("emergency_press_seen_s", "life-saving-exception" in consents)
        levels = plain(
            console.sh("kill $(cat /run/mynabox-test-levels.pid); sort /run/mynabox-test-levels | uniq -c")
        )
        print("boot-test: LED/buzzer levels sampled (count, LED, buzzer):", " ".join(levels.split()))
        samples = [ln.split() for ln in plain(console.sh("cat /run/mynabox-test-levels")).splitlines()]
        ok &= check("led_driven_s", {s[0] for s in samples if len(s) == 2} == {"0", "1"})
        ok &= check("buzzer_driven_s", any(s[1] == "1" for s in samples if len(s) == 2))

        # The watchdog: a stopped daemon stops pinging; systemd kills it (SIGABRT) and starts it again.
        since = console.mark()
        t_stop = time.monotonic()
        console.sh("kill -STOP $(systemctl show -P MainPID mynabox.service)")
        timeout_at = console.wait("mynabox.service: Watchdog timeout", args.step_timeout, since)
        back = None if timeout_at is None else console.wait(READY, args.step_timeout, timeout_at)
        if check("watchdog_restart_s", back is not None):
            figures["sigstop_to_ready_again_s"] = round(time.monotonic() - t_stop, 1)
        else:
            ok = False
            diagnose(console)
        # The daemon logged no error through the boot, the tap and the watchdog restart.
        errors = [ln for ln in console.text().splitlines() if "mynabox[" in ln and DAEMON_ERROR.search(ln)]
        for line in errors[:20]:
            print("boot-test: daemon:", line.strip())
        ok &= check("no_daemon_errors_s", not errors)
        # Nothing tried to write to the read-only root (our own probe aside).
        ro = [ln for ln in console.text().splitlines() if "Read-only file system" in ln and PROBE not in ln]
        for line in ro[:20]:
            print("boot-test: wrote to the root:", line.strip())
        ok &= check("no_root_writes_s", not ro)
        ok &= check_hardware_watchdog(console, check, args.step_timeout)
        result = 0 if ok else 1
    finally:
        vm.kill()
        vm.wait()
        for proc in helpers:
            proc.terminate()
        broker.stop()
    figures["fat_fragments_after"] = leaked(image, keys)
    if figures["fat_fragments_after"]:
        print("boot-test: provisioning secrets can still be read from the image")
        result = 1
    print(json.dumps(figures))
    if args.keep is None and result == 0:
        shutil.rmtree(work)
    return result


if __name__ == "__main__":
    sys.exit(main())
