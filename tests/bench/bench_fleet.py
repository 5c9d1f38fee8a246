"""Fleet figures through the central cluster (run by `make bench-fleet`; prints, asserts nothing).

``BENCH_VEHICLES`` simulated boxes (default 200; the real sealing, SQLite outbox and MQTT link, all in this
process) publish to ``BENCH_GATEWAYS`` onboard gateway brokers (mosquitto, default 4, each bridged with the
shipped bridge config to a different first node) → a 3-node NATS cluster (JetStream R3, MQTT) → one central
consumer that opens and dedupes every message. Each box reads ``BENCH_READS`` times (default 5) at random
moments over ``BENCH_SPREAD_S`` seconds (default 20).

Prints messages/s at the central consumer, publish → central delivery p50/p99 (a box queues a sealed message
→ the consumer has opened it), and the memory one simulated vehicle costs (RSS growth / vehicles). Last line:
JSON.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from mynabox.adapters.mqtt import LinkSettings
from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.payload.seal import Opened
from mynabox.testing.broker import DeliveryKit, Mosquitto
from mynabox.testing.cluster import CentralConsumer, NatsCluster, SimVehicle, bridge_config
from mynabox.testing.wait import wait_for

VEHICLES = int(os.environ.get("BENCH_VEHICLES", "200"))
GATEWAYS = int(os.environ.get("BENCH_GATEWAYS", "4"))
READS = int(os.environ.get("BENCH_READS", "5"))
SPREAD_S = float(os.environ.get("BENCH_SPREAD_S", "20"))
BODY = {"summary": {"synthetic": True, "padding": "x" * 6000}, "read": {"consent": "oral-consent"}}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    # A vehicle holds about 7 descriptors (its TLS socket, paho's socket pair, SQLite's db/wal/shm): 200 of
    # them pass the default soft limit of 1024, and the last ones never connect.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with tempfile.TemporaryDirectory(prefix="mynabox-fleet-") as tmp:
        run(Path(tmp))


def run(tmp: Path) -> None:
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
        gateways = []
        for g in range(GATEWAYS):
            files = kit.pki.add_client(f"gw-{g}")
            ports = cluster.mqtt_ports[g % 3 :] + cluster.mqtt_ports[: g % 3]  # spread the first choice
            extra = bridge_config(cluster, f"gw-{g}", kit.pki.ca_cert, files).replace(
                " ".join(f"127.0.0.1:{p}" for p in cluster.mqtt_ports),
                " ".join(f"127.0.0.1:{p}" for p in ports),
            )
            gateway = Mosquitto(kit.broker_tls, tmp / f"gw-{g}", extra_config=extra)
            gateway.start()
            gateways.append(gateway)
        core = ReceiverCore(kit.opener(), SeenStore(tmp / "central-seen.db"), sink)
        consumer = CentralConsumer(core, cluster.mqtt_ports[-1], kit.pki.ca_cert, central)
        consumer.start()
        consumer.subscribed.wait(20)
        rss_before = rss_mb()
        vehicles = []
        for i, device in enumerate(devices):
            files = kit.pki.client(device)
            port = gateways[i % GATEWAYS].port
            settings = LinkSettings("127.0.0.1", port, device, kit.pki.ca_cert, files.cert, files.key)
            vehicle = SimVehicle(device, kit.sealer(device), tmp / f"{device}.sqlite3", settings)
            vehicle.start()
            vehicles.append(vehicle)
        online = wait_for(lambda: all(v.link.online for v in vehicles), 120)
        per_vehicle_mb = (rss_mb() - rss_before) / VEHICLES
        print(
            f"{sum(v.link.online for v in vehicles)}/{VEHICLES} vehicles online after "
            f"{time.monotonic() - started:.0f} s; RSS per vehicle {per_vehicle_mb * 1000:.0f} kB",
            flush=True,
        )
        if not online:
            errors = {str(v.link.last_error) for v in vehicles if not v.link.online}
            print(f"not online: {sorted(errors)[:5]}", flush=True)
        plan = sorted((random.uniform(0, SPREAD_S), v) for v in vehicles for _ in range(READS))
        t0 = time.monotonic()
        for at, vehicle in plan:
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            vehicle.read(BODY)
        expected = {m: t for v in vehicles for m, t in v.queued_at.items()}
        complete = wait_for(lambda: len(arrived) >= len(expected), 120, 0.05)
        last = max(arrived.values()) if arrived else time.monotonic()
        latencies = [(arrived[m] - t) * 1000 for m, t in expected.items() if m in arrived]
        still_queued = sum(v.outbox.depth() for v in vehicles)
        for vehicle in vehicles:
            vehicle.stop()
        consumer.stop()
        for gateway in gateways:
            gateway.stop()
    figures = {
        "vehicles": VEHICLES,
        "gateways": GATEWAYS,
        "messages": len(expected),
        "arrived": len(arrived),
        "complete": complete,
        "still_in_outboxes": still_queued,
        "duplicates_dropped": core.counts["duplicate"],
        "messages_per_s": round(len(arrived) / max(last - t0, 1e-9), 1),
        "publish_to_central_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "publish_to_central_ms_p99": round(pct(latencies, 0.99), 1) if latencies else None,
        "rss_per_vehicle_kb": round(per_vehicle_mb * 1000),
    }
    print(
        f"{figures['arrived']}/{figures['messages']} at the central consumer, "
        f"{figures['messages_per_s']} msg/s "
        f"(offered ≈ {len(expected) / SPREAD_S:.0f}/s); publish → central p50 "
        f"{figures['publish_to_central_ms_p50']} ms, p99 {figures['publish_to_central_ms_p99']} ms"
    )
    print(json.dumps(figures), flush=True)
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
