"""`make image-test`: boots the built image under qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG: no KVM for
arm64 on this host), with the image's own kernel and initrd, its own root and state partitions, provisioned
by `mynabox provision`. Checks, each with its time printed:
  - the first boot takes the identity in (mynabox-firstboot.service succeeds);
  - the daemon reaches READY (systemd prints "Started mynabox.service" only after READY=1 for Type=notify);
  - afterwards no fragment of a provisioned secret can be read from the image's bytes.
Run with the project's venv: .venv/bin/python image-build/boot-test.py [--timeout S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.keyfiles import save_private_key, save_public_key
from mynabox.testing.tlsfiles import make_test_pki

HERE = Path(__file__).resolve().parent
DEVICE_ID = "amb-qemu"
READY = "Started mynabox.service"
FIRSTBOOT_OK = "Finished mynabox-firstboot.service"
FAILED = ("Failed to start mynabox", "mynabox-firstboot.service: Failed", "Kernel panic", "end Kernel panic")


def artifacts() -> tuple[Path, Path, Path]:
    out = HERE / "out"
    images = sorted(out.glob("mynabox-*-arm64.img.xz"))
    if not images:
        raise SystemExit("boot-test: no image in image-build/out (run `make image` first)")
    name = images[-1].name.removesuffix(".img.xz")
    return images[-1], out / f"{name}.vmlinuz", out / f"{name}.initrd"


def vehicle(work: Path) -> tuple[Path, list[bytes]]:
    d = work / "vehicle"
    make_test_pki(d / "mqtt", server_names=("10.0.2.2", "localhost"), clients=(DEVICE_ID,))
    make_test_pki(d / "summary", server_names=("10.0.2.2", "localhost"), clients=(DEVICE_ID,))
    save_public_key(d / "gateway.pem", ec.generate_private_key(ec.SECP256R1()))
    save_private_key(d / "device-key.pem", ec.generate_private_key(ec.SECP256R1()))
    (d / "audit-key").write_bytes(secrets.token_bytes(32))
    (d / "vehicle.toml").write_text(
        f"""[device]
id = "{DEVICE_ID}"
[mqtt]
host = "10.0.2.2"
port = 8883
ca_file = "mqtt/ca.pem"
client_cert = "mqtt/client-{DEVICE_ID}.pem"
client_key = "mqtt/client-{DEVICE_ID}.key"
[summary]
url = "https://10.0.2.2:8443/v1"
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


def leaked(image: Path, keys: list[bytes]) -> int:
    """Key fragments found in the FAT partition's bytes (the state partition holds the keys by design)."""
    wanted = [f for k in keys for f in fragments(k)]
    with image.open("rb") as f:
        mbr = f.read(512)
        start, count = struct.unpack_from("<II", mbr, 446 + 8)
        f.seek(start * 512)
        fat = f.read(count * 512)
    return sum(1 for w in wanted if w in fat)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for READY")
    parser.add_argument("--keep", type=Path, help="keep the work files (image, console log) here")
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {}
    img_xz, kernel, initrd = artifacts()
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
    os.truncate(image, image.stat().st_size + 512 * 1024 * 1024)  # a bigger "card": the state partition grows
    figures["unpack_s"] = round(time.monotonic() - t0, 1)

    vehicle_file, keys = vehicle(work)
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

    console = work / "console.log"
    cmdline = "root=LABEL=mynabox-root-a ro rootwait console=ttyAMA0 systemd.journald.forward_to_console=1"
    argv = [
        qemu, "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024", "-nographic", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-drive", f"file={image},format=raw,if=virtio",
        "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
        "-device", "i6300esb",
    ]  # fmt: skip
    print("boot-test:", " ".join(argv))
    t_boot = time.monotonic()
    result = 1
    with console.open("wb") as log:
        vm = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert vm.stdout is not None
        os.set_blocking(vm.stdout.fileno(), False)
        buffer = b""
        try:
            while time.monotonic() - t_boot < args.timeout and vm.poll() is None:
                chunk = vm.stdout.read(65536) or b""
                if not chunk:
                    time.sleep(0.2)
                    continue
                log.write(chunk)
                log.flush()
                buffer = (buffer + chunk)[-65536:]
                text = buffer.decode(errors="replace")
                elapsed = round(time.monotonic() - t_boot, 1)
                if FIRSTBOOT_OK in text and "firstboot_s" not in figures:
                    figures["firstboot_s"] = elapsed
                    print(f"boot-test: first boot took the identity in at {elapsed} s")
                if any(bad in text for bad in FAILED):
                    print(f"boot-test: failure on the console at {elapsed} s (see {console})")
                    break
                if READY in text:
                    figures["boot_to_ready_s"] = elapsed
                    print(f"boot-test: the daemon is READY at {elapsed} s")
                    result = 0
                    time.sleep(5)  # let the journal settle before the power is cut
                    break
        finally:
            vm.kill()
            vm.wait()
    if result == 0:
        figures["fat_fragments_after"] = leaked(image, keys)
        if figures["fat_fragments_after"]:
            print("boot-test: provisioning secrets can still be read from the image")
            result = 1
    if result and "boot_to_ready_s" not in figures:
        print(f"boot-test: no READY within {args.timeout:.0f} s; last console lines:")
        print("\n".join(console.read_text(errors="replace").splitlines()[-40:]))
    print(json.dumps(figures))
    if args.keep is None and result == 0:
        shutil.rmtree(work)
    return result


if __name__ == "__main__":
    sys.exit(main())
