"""Fleet figures through the central cluster (run by `make bench-fleet`; prints, judges no figure).

``BENCH_VEHICLES`` simulated boxes (default 200; the real sealing, SQLite outbox and MQTT link, up to
``BENCH_PER_PROCESS`` of them (default 50) in each worker process) publish to ``BENCH_GATEWAYS`` onboard
gateway brokers (mosquitto, default 4, each bridged with the shipped bridge config to a different first node)
→ a 3-node NATS cluster (JetStream R3, MQTT) → one central consumer that opens and dedupes every message.
Each box reads ``BENCH_READS`` times (default 5) at random moments over ``BENCH_SPREAD_S`` s (default 20).

Why worker processes: paho's network loop uses ``select()``, which cannot wait on a descriptor ≥ 1024; in one
process the 169th vehicle's socket gets one and that vehicle silently never comes online
(``support.cluster.FD_SETSIZE``).

Prints how many vehicles came online, messages/s at the central consumer, publish → central delivery p50/p99
(a box queues a sealed message → the consumer has opened it), and the memory one simulated vehicle costs (RSS
growth of the workers / vehicles). Last line: JSON. Exits 2 (with the reasons) if fewer vehicles than asked
came online within ``BENCH_ONLINE_TIMEOUT_S`` (default 120), 1 if a message never reached the consumer.
``BENCH_RESERVE_FDS`` holds that many descriptors open in each worker first (to see the first failure).
"""

from __future__ import annotations

import collections
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package

from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.payload.seal import Opened
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from support.cluster import (
    FD_SETSIZE,
    CentralConsumer,
    NatsCluster,
    OnlineReport,
    VehicleProcess,
    ask_all,
    bridge_config,
)
from support.wait import wait_for

VEHICLES = int(os.environ.get("BENCH_VEHICLES", "200"))
GATEWAYS = int(os.environ.get("BENCH_GATEWAYS", "4"))
PER_PROCESS = int(os.environ.get("BENCH_PER_PROCESS", "50"))
READS = int(os.environ.get("BENCH_READS", "5"))
SPREAD_S = float(os.environ.get("BENCH_SPREAD_S", "20"))
ONLINE_TIMEOUT_S = float(os.environ.get("BENCH_ONLINE_TIMEOUT_S", "120"))
RESERVE_FDS = int(os.environ.get("BENCH_RESERVE_FDS", "0"))
BODY = {"summary": {"synthetic": True, "padding": "x" * 6000}, "read": {"consent": "oral-consent"}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mynabox-fleet-") as tmp:
        sys.exit(run(Path(tmp)))


def fail(reason: str) -> None:
    print(f"FAIL: {reason}", file=sys.stderr, flush=True)


def run(tmp: Path) -> int:
    devices = tuple(f"amb-{i:04d}" for i in range(VEHICLES))
    started = time.monotonic()
    kit = DeliveryKit.create(tmp / "kit", devices=devices)
    central = kit.pki.add_client("central")
    print(f"keys and certificates for {VEHICLES} vehicles: {time.monotonic() - started:.1f} s", flush=True)
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def sink(opened: Opened) -> None:
        with lock:
            arrived[opened.message_id] = time.monotonic()

    with NatsCluster(kit.broker_tls, central, tmp / "nats") as cluster:
        gateways: list[Mosquitto] = []
        workers: list[VehicleProcess] = []
        consumer: CentralConsumer | None = None
        try:
            for g in range(GATEWAYS):
                files = kit.pki.add_client(f"gw-{g}")
                ports = cluster.mqtt_ports[g % 3 :] + cluster.mqtt_ports[: g % 3]  # spread the first choice
                extra = bridge_config(cluster, f"gw-{g}", kit.pki.ca_cert, files).replace(
                    " ".join(f"127.0.0.1:{p}" for p in cluster.mqtt_ports),
                    " ".join(f"127.0.0.1:{p}" for p in ports),
                )
                gateway = Mosquitto(kit.broker_tls, tmp / f"gw-{g}", extra_config=extra)
                gateways.append(gateway)
                gateway.start()
            core = ReceiverCore(kit.opener(), SeenStore(tmp / "central-seen.db"), sink)
            consumer = CentralConsumer(core, cluster.mqtt_ports[-1], kit.pki.ca_cert, central)
            consumer.start()
            consumer.subscribed.wait(20)
            assigned = [(device, gateways[i % GATEWAYS].port) for i, device in enumerate(devices)]
            for first in range(0, VEHICLES, PER_PROCESS):
                worker = VehicleProcess(
                    kit, assigned[first : first + PER_PROCESS], tmp, reserve_fds=RESERVE_FDS
                )
                workers.append(worker)
                worker.start()
            for worker in workers:  # each waits in parallel; the first one's deadline covers the others
                worker.post("online", ONLINE_TIMEOUT_S)
            reports: list[OnlineReport] = [worker.answer(ONLINE_TIMEOUT_S + 60) for worker in workers]
            online = sum(r.vehicles - len(r.offline) for r in reports)
            rss_per_vehicle_kb = sum(r.rss_kb - r.rss_before_kb for r in reports) / VEHICLES
            fds_per_vehicle = sum(r.fds - r.fds_before for r in reports) / VEHICLES
            highest_fd = max(r.highest_fd for r in reports)
            print(
                f"VEHICLES ONLINE: {online}/{VEHICLES} after {time.monotonic() - started:.0f} s "
                f"({len(workers)} worker processes of ≤ {PER_PROCESS}; {fds_per_vehicle:.1f} descriptors a "
                f"vehicle, highest {highest_fd}, select() limit {FD_SETSIZE}); "
                f"RSS per vehicle {rss_per_vehicle_kb:.0f} kB",
                flush=True,
            )
            if online < VEHICLES:
                reasons = collections.Counter(reason for r in reports for reason in r.offline.values())
                fail(f"only {online} of {VEHICLES} vehicles came online within {ONLINE_TIMEOUT_S:.0f} s")
                for reason, count in reasons.most_common(5):
                    fail(f"{count} offline: {reason}")
                return 2
            plan = sorted((random.uniform(0, SPREAD_S), device) for device in devices for _ in range(READS))
            by_worker = {device: worker for worker in workers for device in worker.devices}
            t0 = time.monotonic() + 1.0  # every worker has its plan before the first read
            for worker in workers:
                mine = [(at, device) for at, device in plan if by_worker[device] is worker]
                worker.post("reads", t0, mine, BODY)
            expected: dict[str, float] = {}
            for worker in workers:
                expected.update(worker.answer(SPREAD_S + 120))
            complete = wait_for(lambda: len(arrived) >= len(expected), 120, 0.05)
            with lock:
                got = dict(arrived)
            last = max(got.values()) if got else time.monotonic()
            latencies = [(got[m] - t) * 1000 for m, t in expected.items() if m in got]
            still_queued = sum(ask_all(workers, 30, "depth"))
        finally:
            for worker in workers:
                worker.stop()
            if consumer is not None:
                consumer.stop()
            for gateway in gateways:
                gateway.stop()
    figures = {
        "vehicles": VEHICLES,
        "online": online,
        "gateways": GATEWAYS,
        "worker_processes": len(workers),
        "messages": len(expected),
        "arrived": len(got),
        "complete": complete,
        "still_in_outboxes": still_queued,
        "duplicates_dropped": core.counts["duplicate"],
        "messages_per_s": round(len(got) / max(last - t0, 1e-9), 1),
        "publish_to_central_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "publish_to_central_ms_p99": round(pct(latencies, 0.99), 1) if latencies else None,
        "rss_per_vehicle_kb": round(rss_per_vehicle_kb),
        "descriptors_per_vehicle": round(fds_per_vehicle, 1),
        "run_s": round(time.monotonic() - started),
    }
    print(
        f"{figures['arrived']}/{figures['messages']} at the central consumer, "
        f"{figures['messages_per_s']} msg/s "
        f"(offered ≈ {len(expected) / SPREAD_S:.0f}/s); publish → central p50 "
        f"{figures['publish_to_central_ms_p50']} ms, p99 {figures['publish_to_central_ms_p99']} ms"
    )
    print(json.dumps(figures), flush=True)
    if not complete:
        fail(f"{len(expected) - len(got)} of {len(expected)} messages never reached the central consumer")
        return 1
    return 0


if __name__ == "__main__":
    main()
