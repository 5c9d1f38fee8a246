"""The fire department's central broker as a cluster, for tests and the fleet benchmark: Debian's NATS.

Three ``nats-server`` processes on loopback form one cluster (routes between every pair), each with
JetStream (its own store directory) and an MQTT listener with TLS and client certificates. MQTT sessions and
QoS 1 messages live in JetStream streams replicated to all three nodes (``stream_replicas``), so a node can
die without losing what the cluster acknowledged. Why NATS and not RabbitMQ: RabbitMQ 3.10's MQTT plugin keeps
QoS 1 messages in classic queues that are not replicated (a dead node takes its queues with it), and it needs
an Erlang runtime that starts in tens of seconds; NATS is one static binary that forms a cluster in a second.
NATS' MQTT speaks 3.1.1 only: the gateway's bridge and the central consumer use 3.1.1, the boxes keep MQTT 5
to their gateway.

Also here: :class:`VehicleProcess`, simulated vehicles hosted in worker processes of their own (paho's
network loop cannot use a descriptor ≥ :data:`FD_SETSIZE`, so one process holds only so many), the gateway's
bridge config (``docs/gateway/bridge-central.conf``, the shipped file with its @…@
values filled in) and :class:`CentralConsumer`, the reference consumer that opens, checks and dedupes every
message by its signed ``jti`` (the same :class:`~mynabox.gateway.core.ReceiverCore` as
``mynabox receive``).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.adapters.mqtt import MqttLink, tls_context
from mynabox.adapters.outbox import Outbox
from mynabox.config.model import Credential, MqttConfig
from mynabox.gateway.core import ReceiverCore, Verdict
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Sealer
from mynabox.payload.topics import topic
from mynabox_testkit.broker import BrokerError, BrokerTls, DeliveryKit
from mynabox_testkit.ports import free_port
from mynabox_testkit.tlsfiles import CertFiles
from support.wait import wait_for

NATS = "nats-server"
BRIDGE_TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "gateway" / "bridge-central.conf"
TOPICS = ("mynabox/+/summary", "mynabox/+/audit")


class _Node:
    def __init__(self, index: int, workdir: Path) -> None:
        self.name = f"n{index}"
        self.client_port = free_port()
        self.route_port = free_port()
        self.mqtt_port = free_port()
        self.config = workdir / f"{self.name}.conf"
        self.log = workdir / f"{self.name}.log"
        self.store = workdir / f"{self.name}-js"
        self.proc: subprocess.Popen[bytes] | None = None


class NatsCluster:
    """``with NatsCluster(tls) as cluster:`` - ``cluster.mqtt_ports``, ``kill(i)``, ``start_node(i)``."""

    def __init__(
        self, tls: BrokerTls, probe: CertFiles, workdir: Path | None = None, *, nodes: int = 3
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mynabox-nats-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._tls = tls
        self._probe = probe  # a client certificate for the readiness check (the listeners require one)
        self.nodes = [_Node(i + 1, self.workdir) for i in range(nodes)]
        for node in self.nodes:
            self._write_config(node)

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt_port for n in self.nodes]

    def _write_config(self, node: _Node) -> None:
        routes = ", ".join(f"nats-route://127.0.0.1:{n.route_port}" for n in self.nodes if n is not node)
        t = self._tls
        node.config.write_text(
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f'jetstream {{ store_dir: "{node.store}", max_memory_store: 64MB, max_file_store: 2GB }}\n'
            f"cluster {{ name: central, listen: 127.0.0.1:{node.route_port}, routes: [ {routes} ] }}\n"
            "mqtt {\n"
            f"  listen: 127.0.0.1:{node.mqtt_port}\n"
            f"  stream_replicas: {len(self.nodes)}\n"
            "  ack_wait: 5s\n"
            f'  tls {{ cert_file: "{t.cert}", key_file: "{t.key}", ca_file: "{t.ca}", verify: true }}\n'
            "}\n"
        )

    def start(self, timeout: float = 30.0) -> None:
        for i in range(len(self.nodes)):
            self.start_node(i, wait=False)
        self.wait_ready(timeout)

    def start_node(self, index: int, *, wait: bool = True) -> None:
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            return
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [NATS, "-c", str(node.config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        if wait:
            self.wait_ready(30.0, only=(index,))

    def wait_ready(self, timeout: float, *, only: tuple[int, ...] | None = None) -> None:
        """Until every (or each given) node's MQTT listener accepts a session: JetStream is up and led."""
        deadline = time.monotonic() + timeout
        for i in only if only is not None else range(len(self.nodes)):
            node = self.nodes[i]
            while not self._mqtt_ok(node):
                if node.proc is None or node.proc.poll() is not None:
                    raise BrokerError(f"nats-server {node.name} exited; see {node.log}")
                if time.monotonic() > deadline:
                    raise BrokerError(f"nats-server {node.name} not ready within {timeout} s; see {node.log}")
                time.sleep(0.2)

    def _mqtt_ok(self, node: _Node) -> bool:
        ok = threading.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"probe-{node.name}", protocol=paho.MQTTv311
        )
        client.tls_set_context(client_context(self._tls.ca, self._probe))
        client.on_connect = lambda _c, _u, _f, code, _p: ok.set() if not code.is_failure else None
        try:
            client.connect("127.0.0.1", node.mqtt_port, keepalive=5)
            client.loop_start()
            return ok.wait(2.0)
        except OSError:
            return False
        finally:
            client.disconnect()
            client.loop_stop()

    def kill(self, index: int) -> None:
        self._signal(self.nodes[index], signal.SIGKILL)

    def stop(self) -> None:
        for node in self.nodes:
            self._signal(node, signal.SIGTERM)

    def _signal(self, node: _Node, sig: signal.Signals) -> None:
        proc, node.proc = node.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def __enter__(self) -> NatsCluster:
        try:
            self.start()
        except BaseException:  # a node that never got ready must not outlive the test
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()


def client_context(ca: Path, files: CertFiles) -> ssl.SSLContext:
    """The box's own client TLS context (adapters.mqtt.tls_context) for a test client's certificate."""
    return tls_context(ca, files.cert, files.key)


def bridge_config(cluster: NatsCluster, gateway_id: str, ca: Path, files: CertFiles) -> str:
    """The shipped bridge file with this cluster's addresses and the gateway's certificate filled in."""
    values = {
        "@CENTRAL_ADDRESSES@": " ".join(f"127.0.0.1:{p}" for p in cluster.mqtt_ports),
        "@GATEWAY_ID@": gateway_id,
        "@CENTRAL_CA@": str(ca),
        "@GATEWAY_CERT@": str(files.cert),
        "@GATEWAY_KEY@": str(files.key),
    }
    text = BRIDGE_TEMPLATE.read_text(encoding="utf-8")
    for token, value in values.items():
        text = text.replace(token, value)
    if "@" in "".join(line for line in text.splitlines() if not line.startswith("#")):
        raise BrokerError("bridge template has a value nobody filled in")
    return text


class CentralConsumer:
    """The fire department's consumer: a persistent MQTT 3.1.1 session on one cluster node, QoS 1, each
    message opened and deduped by :class:`ReceiverCore` and acknowledged only after its sink ran."""

    def __init__(
        self, core: ReceiverCore, port: int, ca: Path, files: CertFiles, *, client_id: str = "central"
    ) -> None:
        self._core = core
        self.port = port
        self.verdicts: list[Verdict] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        client.tls_set_context(client_context(ca, files))
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._cb_connect
        client.on_subscribe = lambda _c, _u, _m, _codes, _p: self.subscribed.set()
        client.on_message = self._cb_message
        self._client = client

    def start(self) -> None:
        self._client.connect_async("127.0.0.1", self.port, keepalive=10)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _cb_connect(self, client: paho.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        if not code.is_failure:
            client.subscribe([(t, 1) for t in TOPICS])

    def _cb_message(self, client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        verdict = self._core.handle(message.topic, bytes(message.payload), now=datetime.now(UTC))
        with self._lock:
            self.verdicts.append(verdict)
        client.ack(message.mid, message.qos)

    def count(self, kind: type[Any]) -> int:
        with self._lock:
            return sum(1 for v in self.verdicts if isinstance(v, kind))


class SimVehicle:
    """One simulated box: the real sealing, SQLite outbox and MQTT link, publishing to its gateway's broker.

    ``read()`` stands for a tap: a synthetic summary body is sealed and queued, as the daemon's delivery does;
    ``queued_at`` keeps each message's time so a benchmark can measure publish → central delivery.
    """

    def __init__(self, device_id: str, sealer: Sealer, outbox_path: Path, mqtt: MqttConfig) -> None:
        self.device_id = device_id
        self._sealer = sealer
        self.outbox = Outbox(outbox_path)
        self.link = MqttLink(mqtt, device_id, self.outbox)
        self.queued_at: dict[str, float] = {}

    def start(self) -> None:
        self.link.start()

    def read(self, body: Mapping[str, object]) -> str:
        now = datetime.now(UTC)
        queued = time.monotonic()
        sealed = self.outbox.put_sealed(
            topic(self.device_id, "summary"),
            lambda seq: self._sealer.seal(Kind.SUMMARY, body, now=now, clock_synced=True, seq=seq),
            now=now,
        )
        self.queued_at[sealed.message_id] = queued
        self.link.notify()
        return sealed.message_id

    def stop(self) -> None:
        try:
            self.link.stop(timeout=2.0)
        finally:
            self.outbox.close()


FD_SETSIZE = 1024
"""paho's network loop waits in ``select()``, which takes no descriptor ≥ 1024: a client whose socket gets one
fails inside paho, is taken for a lost connection and retried forever with no error reported (never online).
At ≈ 6 descriptors a simulated vehicle (TLS socket, paho's socket pair, SQLite's db/wal/shm), one process
reaches it at ≈ 168 vehicles."""
VEHICLES_PER_PROCESS_MAX = 100


@dataclass(frozen=True)
class OnlineReport:
    """One worker's vehicles after ``wait_online``: who is offline and why, its descriptors and memory."""

    vehicles: int
    offline: dict[str, str]  # device → reason
    highest_fd: int
    fds_before: int  # open descriptors before its vehicles started
    fds: int
    rss_before_kb: int  # after imports, before its vehicles started
    rss_kb: int


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _open_fds() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/fd")]


class VehicleProcess:
    """Up to :data:`VEHICLES_PER_PROCESS_MAX` :class:`SimVehicle` in a spawned worker process (no fork of the
    caller's threads), driven over a pipe. ``time.monotonic`` is CLOCK_MONOTONIC, one clock for every process
    on the machine, so the worker's ``queued_at`` times compare with the caller's arrival times.

    ``vehicles`` are (device, gateway port) pairs; ``reserve_fds`` holds that many descriptors open in the
    worker before its vehicles start (a test pushes their sockets past :data:`FD_SETSIZE` with it).
    """

    def __init__(
        self,
        kit: DeliveryKit,
        vehicles: Sequence[tuple[str, int]],
        workdir: Path,
        *,
        reserve_fds: int = 0,
    ) -> None:
        if not 0 < len(vehicles) <= VEHICLES_PER_PROCESS_MAX:
            raise ValueError(f"a worker hosts 1..{VEHICLES_PER_PROCESS_MAX} vehicles, not {len(vehicles)}")
        self.devices = [device for device, _port in vehicles]
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_vehicle_worker,
            args=(child, kit, list(vehicles), workdir, reserve_fds),
            name="mynabox-vehicles",
            daemon=True,
        )
        self._child = child

    def start(self, timeout: float = 120.0) -> None:
        """Spawn the worker and return once its vehicles' links are started (not yet online)."""
        self._proc.start()
        self._child.close()
        self.answer(timeout)

    def post(self, *request: object) -> None:
        self._conn.send(request)

    def answer(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise BrokerError(f"vehicle worker {self._proc.pid} did not answer within {timeout} s")
        status, value = self._conn.recv()
        if status != "ok":
            raise BrokerError(f"vehicle worker {self._proc.pid} failed: {value}")
        return value

    def wait_online(self, timeout: float) -> OnlineReport:
        self.post("online", timeout)
        report: OnlineReport = self.answer(timeout + 60)
        return report

    def stop(self, timeout: float = 60.0) -> None:
        try:
            if self._proc.is_alive():
                self.post("stop")
                self.answer(timeout)
        except (BrokerError, OSError):
            pass  # it is ended below either way
        finally:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._conn.close()


def ask_all(workers: Sequence[VehicleProcess], timeout: float, *request: object) -> list[Any]:
    """The same request to every worker at once (they work in parallel), then each one's answer."""
    for worker in workers:
        worker.post(*request)
    return [worker.answer(timeout) for worker in workers]


def _vehicle_worker(
    conn: Any, kit: DeliveryKit, vehicles: list[tuple[str, int]], workdir: Path, reserve_fds: int
) -> None:
    sims: dict[str, SimVehicle] = {}
    try:
        if reserve_fds:  # room for them on a machine whose soft limit is 1024
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            wanted = reserve_fds + 1024
            if soft != resource.RLIM_INFINITY and soft < wanted:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(reserve_fds)]
        fds_before, rss_before = len(_open_fds()), _rss_kb()
        for device, port in vehicles:
            files = kit.pki.client(device)
            mqtt = MqttConfig("127.0.0.1", kit.pki.ca_cert, files.cert, Credential.at(files.key), port=port)
            sim = SimVehicle(device, kit.sealer(device), workdir / f"{device}.sqlite3", mqtt)
            sims[device] = sim
            sim.start()
        conn.send(("ok", None))
        while True:
            op, *args = conn.recv()
            if op == "online":
                wait_for(lambda: all(s.link.online for s in sims.values()), float(args[0]), 0.1)
                fds = _open_fds()
                offline = {d: _offline_reason(s, max(fds)) for d, s in sims.items() if not s.link.online}
                report = OnlineReport(
                    len(sims), offline, max(fds), fds_before, len(fds), rss_before, _rss_kb()
                )
                conn.send(("ok", report))
            elif op == "reads":  # (t0, [(seconds after t0, device)], body) → {message id: queued at}
                t0, plan, body = args
                for at, device in plan:
                    delay = t0 + at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sims[device].read(body)
                conn.send(("ok", {m: t for s in sims.values() for m, t in s.queued_at.items()}))
            elif op == "depth":
                conn.send(("ok", sum(s.outbox.depth() for s in sims.values())))
            elif op == "stop":
                break
            else:
                raise ValueError(f"unknown request {op!r}")
        _stop_all(sims)
        sims = {}
        for fd in held:
            os.close(fd)
        conn.send(("ok", None))
    except Exception as exc:  # the parent raises it with this text
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        _stop_all(sims)
        conn.close()


def _stop_all(sims: Mapping[str, SimVehicle]) -> None:
    for sim in sims.values():
        sim.stop()


def _offline_reason(sim: SimVehicle, highest_fd: int) -> str:
    if sim.link.last_error is not None:
        return f"{type(sim.link.last_error).__name__}: {sim.link.last_error}"
    if highest_fd >= FD_SETSIZE:
        return (
            f"no error, but this process holds descriptor {highest_fd} ≥ FD_SETSIZE {FD_SETSIZE}, which "
            "paho's select() loop cannot wait on (host fewer vehicles per process)"
        )
    return "no CONNACK yet and no error reported"
