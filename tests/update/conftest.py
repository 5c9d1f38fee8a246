"""Update fixtures: a test signing PKI made here (never a key in the repository), and a real RAUC service
on a private system bus, in a mount namespace whose /proc/cmdline says which slot U-Boot booted."""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
SYSTEM_CONF = REPO / "image-build" / "rauc" / "system.conf"

DBUS_POLICY = REPO / "image-build" / "rauc" / "de.pengutronix.rauc.conf"
# A system bus as Debian's dbus configures it (deny by default), with the image's policy for RAUC's name.
_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:abstract={name}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""


@dataclass(frozen=True)
class Signer:
    cert: Path
    key: Path
    ca: Path


def make_signer(directory: Path, name: str, *, days: int = 30, codesign: bool = True) -> Signer:
    """A CA and a code-signing certificate under it, as RAUC's `check-purpose=codesign` wants them."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test update CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test bundle signer")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    )
    if codesign:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out = Signer(
        directory / f"{name}-signer.pem", directory / f"{name}-signer.key", directory / f"{name}-ca.pem"
    )
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out.key.chmod(0o600)
    return out


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return make_signer(tmp_path_factory.mktemp("pki"), "fleet")


def system_conf_for_test(tmp: Path, keyring: Path, backend: Path, slots: tuple[Path, Path]) -> Path:
    """The image's system.conf with this machine's paths: the same keys and values otherwise."""
    text = SYSTEM_CONF.read_text()
    for old, new in (
        ("/var/lib/mynabox/rauc", str(tmp / "data")),
        ("/usr/lib/mynabox/rauc-bootloader-backend", str(backend)),
        ("/etc/rauc/keyring.pem", str(keyring)),
        ("/dev/disk/by-partuuid/6d796e61-02", str(slots[0])),
        ("/dev/disk/by-partuuid/6d796e61-03", str(slots[1])),
    ):
        assert old in text, old
        text = text.replace(old, new)
    try:
        pwd.getpwnam("rauc-stream")
    except KeyError:  # the image's streaming user (install-rauc makes it) is not on this machine
        text = text.replace("sandbox-user=rauc-stream", "sandbox-user=nobody")
    (tmp / "data").mkdir(exist_ok=True)
    conf = tmp / "system.conf"
    conf.write_text(text)
    return conf


@dataclass(frozen=True)
class RaucBox:
    conf: Path
    boot: Path  # the FAT partition's stand-in: bootstate.0/1
    calls: Path  # every backend call RAUC made, one a line
    env: dict[str, str]

    def rauc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rauc", *args], env=self.env, capture_output=True, text=True, timeout=60, check=check
        )


def rauc_service_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a mount namespace with its own /proc/cmdline)"
    for tool in ("rauc", "dbus-daemon", "dbus-send", "unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs it)"
    return None


@contextmanager
def rauc_service(tmp: Path, keyring: Path, booted: str = "A") -> Iterator[RaucBox]:
    boot = tmp / "boot"
    boot.mkdir()
    calls = tmp / "calls"
    backend = tmp / "backend"
    backend.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f"exec {sys.executable} -m mynabox.cli update bootloader-backend"
        f' --dir {boot} --cmdline {tmp}/cmdline "$@"\n'
    )
    backend.chmod(0o755)
    (tmp / "cmdline").write_text(f"console=ttyAMA0 rauc.slot={booted} mynabox.bootstate=ok\n")
    slots = (tmp / "slot-a.img", tmp / "slot-b.img")
    for slot in slots:
        with slot.open("wb") as f:
            f.truncate(8 << 20)
    conf = system_conf_for_test(tmp, keyring, backend, slots)
    name = f"mynabox-test-bus-{os.getpid()}-{time.monotonic_ns()}"
    (tmp / "bus.conf").write_text(_BUS_CONF.format(name=name, policy=DBUS_POLICY))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:abstract={name}"}
    bus = subprocess.Popen(
        ["dbus-daemon", "--config-file", str(tmp / "bus.conf"), "--nofork", "--nopidfile"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    service = None
    try:
        _wait_for(lambda: _bus_up(env), "the private bus")
        log = (tmp / "service.log").open("wb")
        service = subprocess.Popen(
            [
                "unshare", "-m", "sh", "-c",
                f'mount --bind {tmp}/cmdline /proc/cmdline && exec rauc -c "{conf}" service',
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        box = RaucBox(conf, boot, calls, env)
        _wait_for(lambda: box.rauc("status", check=False).returncode == 0, "rauc service")
        yield box
    finally:
        for proc in (service, bus):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _bus_up(env: dict[str, str]) -> bool:
    probe = subprocess.run(
        [
            "dbus-send",
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/",
            "org.freedesktop.DBus.GetId",
        ],
        env=env,
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


def _wait_for(ready: object, what: str, timeout: float = 20.0) -> None:
    assert callable(ready)
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not come up in {timeout} s")
        time.sleep(0.1)
