"""`make image-test`: boots the built image under qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG: no KVM for
arm64 on this host), with the image's own kernel and initrd, its own root and state partitions, provisioned
by `mynabox provision`, against a broker (mosquitto, TLS) and the reference summary service on the host.
Checks, each with its time printed:
  - the initramfs grows the state partition to the end of the bigger "card" and systemd grows its ext4;
  - the first boot takes the identity in (mynabox-firstboot.service succeeds);
  - the daemon reaches READY (systemd logs "Started mynabox.service" only after READY=1 for Type=notify),
    with the root mounted read-only (and writes to it refused);
  - the box connects to the broker on the host with its client certificate;
  - a virtual card presented on the host (vpcd: the test copy of the image gets Debian's vsmartcard-vpcd
    driver, hostfwd to its port) is read, the lookup goes to the reference service, and the sealed summary
    that reaches the broker is opened by `mynabox receive`;
  - the daemon stopped with SIGSTOP is killed and restarted by systemd's watchdog, and it logged no error;
  - PID 1 drives the hardware watchdog (qemu's i6300esb): a crashed kernel is reset by it, and the box
    comes back to READY (a second boot: nothing to grow, no identity left to take);
  - afterwards no fragment of a provisioned secret can be read from the FAT partition's bytes.
The vpcd tap needs the test copy's config in test mode (the virtual card's certificate is from the test CA):
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
from mynabox_testkit.patients import patient
from mynabox_testkit.tlsfiles import make_test_pki

HERE = Path(__file__).resolve().parent
DEVICE_ID = "amb-qemu"
READY = "Started mynabox.service"
FIRSTBOOT_OK = "Finished mynabox-firstboot.service"
# Matched on the journal's lines (forwarded to the console, no colour codes).
GROWN = "mynabox: grow-state: "
PROBE = "/usr/.mynabox-probe"  # check_layout's write to the read-only root, which must fail
DAEMON_ERROR = re.compile(r"\b(ERROR|CRITICAL|Traceback)\b")
FAILED = ("Failed to start mynabox.service", "Failed to start mynabox-firstboot.service", "end Kernel panic")
VPCD_PORT = 0x8C7B  # the slot's port in Debian's /etc/reader.conf.d/vpcd


def artifacts(out: Path) -> tuple[Path, Path, Path]:
    images = sorted(out.glob("mynabox-*-arm64.img.xz"))
    if not images:
        raise SystemExit(f"boot-test: no image in {out} (run `make image` first)")
    name = images[-1].name.removesuffix(".img.xz")
    return images[-1], out / f"{name}.vmlinuz", out / f"{name}.initrd"


def vehicle(work: Path, mqtt_port: int, summary_port: int) -> tuple[Path, list[bytes]]:
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
[display]
driver = "dummy"
[panel]
pin_factory = "mock"
"""
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


def add_vpcd(image: Path, work: Path, replace: list[tuple[Path, str]]) -> None:
    """The test copy only: Debian's vpcd driver for pcscd (the virtual reader) into root A, with debugfs on
    the partition cut out of the copy and put back. The production image never has it. `replace` swaps
    files of root A for local ones (to try a unit's fix without a rebuild)."""
    extract = work / "vpcd-root"
    driver = extract / "usr/lib/pcsc/drivers/serial/libifdvpcd.so.0.8"
    if not driver.exists():
        subprocess.run(
            ["mmdebstrap", "--quiet", "--arch=arm64", "--variant=extract", "--include=vsmartcard-vpcd",
             "trixie", str(extract)],
            check=True,
        )  # fmt: skip
    offset, size = partition(image, 1)
    part = work / "root-a.ext4"
    dd = ["dd", "bs=1M", "status=none", "iflag=skip_bytes,count_bytes", "oflag=seek_bytes"]
    subprocess.run(
        [*dd, f"if={image}", f"of={part}", f"skip={offset}", f"count={size}", "conv=sparse"], check=True
    )
    script = work / "vpcd.debugfs"
    script.write_text(
        "mkdir /usr/lib/pcsc/drivers/serial\n"
        "cd /usr/lib/pcsc/drivers/serial\n"
        f"write {driver} libifdvpcd.so.0.8\n"
        "symlink libifdvpcd.so libifdvpcd.so.0.8\n"
        "cd /etc/reader.conf.d\n"
        f"write {extract}/etc/reader.conf.d/vpcd vpcd\n"
        + "".join(
            f"cd {os.path.dirname(g)}\nrm {os.path.basename(g)}\nwrite {local} {os.path.basename(g)}\n"
            for local, g in replace
        )
    )
    subprocess.run(["debugfs", "-w", "-f", str(script), str(part)], check=True, capture_output=True)
    fsck = subprocess.run(["e2fsck", "-fn", str(part)], capture_output=True, text=True, check=False)
    if fsck.returncode != 0:
        raise SystemExit(f"boot-test: root A damaged by the vpcd addition: {fsck.stdout[-500:]}")
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
    received: Path, receive: subprocess.Popen[bytes], timeout: float
) -> dict[str, Any] | None:
    """The first opened message of kind summary the receiver wrote (the tap's audit record comes too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and receive.poll() is None:
        for path in sorted(received.rglob("*.json")):
            doc: dict[str, Any] = json.loads(path.read_text())
            if doc.get("kind") == "summary":
                return doc
        time.sleep(0.5)
    return None


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
    t0 = time.monotonic()
    add_vpcd(image, work, [(Path(a).resolve(), b) for a, b in (r.split("=", 1) for r in args.replace)])
    figures["vpcd_added_s"] = round(time.monotonic() - t0, 1)

    mqtt_port, summary_port, vpcd_port = free_port(), free_port(), free_port()
    vehicle_file, keys = vehicle(work, mqtt_port, summary_port)
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
        qemu, "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024", "-nographic",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-drive", f"file={image},format=raw,if=virtio",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{vpcd_port}-:{VPCD_PORT}",
        "-device", "virtio-net-pci,netdev=net0,romfile=",  # no option ROM: direct kernel boot needs none
        "-device", "i6300esb",
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
        # Test mode (the test CA) for the virtual card, and oral consent by default (a box without buttons:
        # the mock pins cannot be pressed from here), in the state partition's config; then a restart.
        since = console.mark()
        config = "/var/lib/mynabox/identity/config.toml"
        console.sh(
            f"sed -i 's/^\\[device\\]$/[device]\\ntest_mode = true/' {config}"
            f" && printf '\\n[consent]\\ndefault = \"oral\"\\n' >> {config}"
            " && systemctl restart mynabox.service"
        )
        ok &= check("test_mode_ready_s", console.wait(READY, args.step_timeout, since) is not None)
        deadline = time.monotonic() + args.step_timeout
        while f"as {DEVICE_ID}" not in broker.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        ok &= check("broker_connected_s", f"as {DEVICE_ID}" in broker.log())

        # A tap: the virtual card on the host, through hostfwd to vpcd in the guest's pcscd.
        t_tap = time.monotonic()
        vcard_log = (work / "vcard.log").open("wb")
        vcard = subprocess.Popen(
            [*py, "vcard", "--port", str(vpcd_port), "--patient", "healthy"],
            stdout=vcard_log,
            stderr=subprocess.STDOUT,
        )
        helpers.append(vcard)
        summary = wait_for_summary(work / "received", receive, args.step_timeout)
        if check("tap_received_s", summary is not None):
            figures["tap_to_receiver_s"] = round(time.monotonic() - t_tap, 1)
            assert summary is not None
            # The reference service's record of this patient, opened at the receiver: the lookup went there.
            drug = patient("healthy").prescriptions[0].drug_name
            ok &= check("lookup_from_refsvc_s", drug in json.dumps(summary["body"], ensure_ascii=False))
        else:
            ok = False
            print((work / "vcard.log").read_text(errors="replace")[-800:])
            print((work / "receive.log").read_text(errors="replace")[-800:])
            diagnose(console)
        vcard.terminate()

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
