"""A private mosquitto for tests, the demo and the benchmarks: loopback, TLS with client certificates, ACL.

The broker runs in the foreground from a config written into a temporary directory; it is started, stopped
(SIGTERM: it saves its persistence file), killed (SIGKILL) and restarted by its PID, on the same port.

Authentication is the client certificate: ``use_identity_as_username`` makes the certificate's CN the user
name, and ``use_username_as_clientid`` makes it the client id too, whatever id the client asked for: no
certificate can take over (or wipe with a clean start) another client's session. The ACL lets a device
write only its own four topics ``mynabox/<its CN>/{availability,state,summary,audit}`` and the gateway read
``mynabox/#``; the ``mynabox_retain`` plugin (C, built here from ``mynabox/data/broker``) refuses retained
publishes other than a client's own availability and state. Size and queue limits follow
``payload.envelope.MAX_MESSAGE_BYTES`` (:func:`hardening_lines`, the same lines as
``docs/gateway/mosquitto.conf``).
``persistence true`` (in the temp dir) keeps a persistent receiver session and its queued QoS 1 messages
across a broker restart; mosquitto defaults to ``persistence false``, which a gateway broker must not use.
"""

from __future__ import annotations

import atexit
import functools
import getpass
import hashlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from types import TracebackType

from mynabox.adapters.keyfiles import load_private_key, load_public_keys, save_private_key, save_public_key
from mynabox.adapters.mqtt import MAX_PACKET_BYTES
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, Kind
from mynabox.payload.keys import generate_device_key
from mynabox.payload.seal import Opener, Sealed, Sealer
from mynabox_testkit.ports import free_port
from mynabox_testkit.tlsfiles import TestPki, make_test_pki

MOSQUITTO = "mosquitto"
CC = "cc"

# The queue of a persistent subscriber that is offline (the gateway's receiver): at most this many
# messages or bytes are kept for it; past either, mosquitto drops new ones for that client (its log says
# "Outgoing messages are being dropped"). 64 MiB is 256 messages of the largest size, or days of reads.
MAX_QUEUED_MESSAGES = 2000
MAX_QUEUED_BYTES = 64 * 1024 * 1024


class BrokerError(Exception):
    """The test broker did not start or stop as asked."""


@dataclass(frozen=True)
class BrokerTls:
    ca: Path
    cert: Path
    key: Path


def acl_text(gateway: str = "gateway") -> str:
    """Per-device write to its own four topics (CN = user name); the gateway reads all under mynabox/."""
    return (
        "# Devices: write only their own topics, named by their certificate CN (pattern lines apply to\n"
        "# every user).\n"
        "pattern write mynabox/%u/availability\n"
        "pattern write mynabox/%u/state\n"
        "pattern write mynabox/%u/summary\n"
        "pattern write mynabox/%u/audit\n"
        f"user {gateway}\n"
        "topic read mynabox/#\n"
    )


def hardening_lines(retain_plugin: Path | str) -> list[str]:
    """The identity, size, queue and retain settings every mynabox broker needs (mosquitto 2.0)."""
    return [
        "use_identity_as_username true",  # the certificate's CN is the user name the ACL sees ...
        "use_username_as_clientid true",  # ... and the client id: nobody takes over another's session
        f"max_packet_size {MAX_PACKET_BYTES}",  # larger: disconnected before it is read
        f"message_size_limit {MAX_MESSAGE_BYTES}",  # a payload past the limit: PUBACK 0x95, not forwarded
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        f"plugin {retain_plugin}",  # retained only for a client's own availability and state
    ]


@functools.cache
def retain_plugin() -> Path:
    """Build ``mynabox_retain.so`` once per process into a private temp dir (needs cc and mosquitto-dev)."""
    source = resources.files("mynabox").joinpath("data/broker/mynabox_retain.c").read_bytes()
    out_dir = Path(tempfile.mkdtemp(prefix="mynabox-plugin-"))
    atexit.register(shutil.rmtree, out_dir, True)
    src = out_dir / "mynabox_retain.c"
    src.write_bytes(source)
    target = out_dir / f"mynabox_retain-{hashlib.sha256(source).hexdigest()[:12]}.so"
    try:
        subprocess.run(
            [CC, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(target), str(src)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        raise BrokerError(
            "cannot build the mynabox_retain broker plugin (needs cc and mosquitto-dev, see "
            f"scripts/install-deps.sh): {type(err).__name__} {detail.decode(errors='replace')[:300]}"
        ) from err
    return target


class Mosquitto:
    """``with Mosquitto(tls, workdir) as broker:`` - ``broker.port``, ``stop()``, ``kill()``, ``start()``."""

    def __init__(
        self,
        tls: BrokerTls,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        gateway: str = "gateway",
        start_timeout: float = 10.0,
        extra_config: str = "",
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mynabox-mosquitto-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self._tls = tls
        self._gateway = gateway
        self._timeout = start_timeout
        self._extra = extra_config  # appended as it is (a bridge section, for instance)
        self._proc: subprocess.Popen[bytes] | None = None
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._write_config()

    def _write_config(self) -> None:
        data_dir = self.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        acl = self.workdir / "acl"
        acl.write_text(acl_text(self._gateway))
        self.config_path.write_text(
            "\n".join(
                [
                    f"user {getpass.getuser()}",  # as root mosquitto would switch to 'mosquitto'; stay us
                    "per_listener_settings false",
                    "allow_anonymous false",
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {self._tls.ca}",
                    f"certfile {self._tls.cert}",
                    f"keyfile {self._tls.key}",
                    "require_certificate true",
                    "tls_version tlsv1.2",
                    f"acl_file {acl}",
                    *hardening_lines(retain_plugin()),
                    "persistence true",
                    f"persistence_location {data_dir}/",
                    "autosave_interval 1",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "log_type subscribe",  # lets a test wait until a subscriber is really in place
                    "connection_messages true",
                    self._extra,
                    "",
                ]
            )
        )

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise BrokerError(f"mosquitto did not accept on port {self.port} within {self._timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: mosquitto disconnects clients and writes its persistence file."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()


_SEQ = itertools.count(1)  # one counter per process: every device's numbers only grow, as on a box


class NumberedSealer(Sealer):
    """A test's sealer that numbers its messages itself (on a box the outbox hands out ``seq``)."""

    def seal(
        self,
        kind: Kind,
        body: Mapping[str, object],
        *,
        now: datetime,
        clock_synced: bool,
        seq: int | None = None,
    ) -> Sealed:
        number = next(_SEQ) if seq is None else seq
        return super().seal(kind, body, now=now, clock_synced=clock_synced, seq=number)


@dataclass(frozen=True)
class DeliveryKit:
    """Everything a delivery test needs on disk: a test PKI, envelope keys and where they live.

    ``devices`` get a TLS client certificate (CN = device id) and an envelope signing key; ``gateway`` gets a
    client certificate and the envelope decryption key; ``device_keys_dir`` holds ``<device>.pem`` public keys
    as ``mynabox receive --device-keys`` expects.
    """

    dir: Path
    pki: TestPki
    devices: tuple[str, ...]
    gateway: str
    gateway_key_file: Path
    device_keys_dir: Path
    device_key_files: dict[str, Path]

    @classmethod
    def create(
        cls, directory: Path, devices: tuple[str, ...] = ("ambulance-01",), gateway: str = "gateway"
    ) -> DeliveryKit:
        pki = make_test_pki(directory / "pki", clients=(*devices, gateway))
        keys_dir = directory / "envelope"
        device_keys_dir = keys_dir / "devices"
        device_keys_dir.mkdir(parents=True, exist_ok=True)
        gateway_key_file = keys_dir / "gateway.key"
        save_private_key(gateway_key_file, generate_device_key())
        device_files = {}
        for device in devices:
            key = generate_device_key()
            device_files[device] = keys_dir / f"{device}.key"
            save_private_key(device_files[device], key)
            save_public_key(device_keys_dir / f"{device}.pem", key)
        return cls(directory, pki, devices, gateway, gateway_key_file, device_keys_dir, device_files)

    @property
    def broker_tls(self) -> BrokerTls:
        return BrokerTls(self.pki.ca_cert, self.pki.server_cert, self.pki.server_key)

    def sealer(self, device: str) -> NumberedSealer:
        gateway_public = load_private_key(self.gateway_key_file).public_key()
        return NumberedSealer(device, load_private_key(self.device_key_files[device]), gateway_public)

    def opener(self, *, max_age: timedelta = timedelta(days=7)) -> Opener:
        return Opener(
            load_private_key(self.gateway_key_file),
            load_public_keys(self.device_keys_dir),
            max_age=max_age,
            max_skew=timedelta(minutes=5),
            max_size=MAX_MESSAGE_BYTES,
        )
