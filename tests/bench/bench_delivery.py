"""Delivery and daemon figures on the real stack (run by `make bench`; prints, asserts nothing).

- seal/open: the envelope alone (from bench_seal).
- read_to_receiver: a virtual card tap to the gateway receiver holding the opened summary, through pcscd,
  the daemon (`mynabox run` as a subprocess, default consent), the reference service, mosquitto with TLS.
- start_to_ready: process start to READY=1 on the test's NOTIFY_SOCKET.
- rss_mb after N reads, idle_cpu_percent over an idle period, from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_seal import measure

from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.testing.mynacard import VirtualMyNumberCard
from mynabox.testing.patients import PATIENTS
from mynabox.testing.stack import BoxStack
from mynabox.testing.vpcd import VpcdCardServer

READS = int(os.environ.get("BENCH_READS", "30"))
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "20"))
MYNABOX = str(Path(".venv/bin/mynabox").resolve())
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    seal = measure(200)
    with BoxStack(device_id="amb-bench", consent_default="oral", result_clear_s=1) as stack:
        assert stack.kit is not None and stack.broker is not None and stack.pcscd is not None
        stack.pcscd.use_in_process()
        opened: list[tuple[float, Opened]] = []
        receiver = stack.gateway_receiver(lambda o: opened.append((time.perf_counter(), o)))
        receiver.start()
        receiver.subscribed.wait(10)
        notify_path = stack.dir / "notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(30)
        env = dict(os.environ, **stack.env(), NOTIFY_SOCKET=str(notify_path))
        started = time.perf_counter()
        daemon = subprocess.Popen(
            [MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=subprocess.DEVNULL
        )
        while b"READY=1" not in notify.recv(4096):
            pass
        start_to_ready_ms = (time.perf_counter() - started) * 1000
        latencies = []
        registered = [p for p in PATIENTS if p.key != "not-registered"]
        try:
            for i in range(READS):
                card = VirtualMyNumberCard(registered[i % len(registered)].card_id)
                want = sum(1 for _, o in opened if o.kind is Kind.SUMMARY) + 1
                stack.pcscd.wait_empty()
                tapped = time.perf_counter()
                server = VpcdCardServer(card, port=stack.pcscd.vpcd_port).start()
                deadline = time.monotonic() + 20
                while (
                    sum(1 for _, o in opened if o.kind is Kind.SUMMARY) < want and time.monotonic() < deadline
                ):
                    time.sleep(0.002)
                done = [t for t, o in opened if o.kind is Kind.SUMMARY]
                latencies.append((done[-1] - tapped) * 1000)
                server.remove()
            rss = rss_mb(daemon.pid)
            cpu0 = cpu_seconds(daemon.pid)
            time.sleep(IDLE_S)
            idle_cpu = (cpu_seconds(daemon.pid) - cpu0) / IDLE_S * 100
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            receiver.stop()
            notify.close()
    figures = {
        "seal_ms_p50": round(seal["seal_ms_p50"], 3),
        "open_ms_p50": round(seal["open_ms_p50"], 3),
        "read_to_receiver_ms_p50": round(statistics.median(latencies), 1),
        "read_to_receiver_ms_max": round(max(latencies), 1),
        "start_to_ready_ms": round(start_to_ready_ms, 1),
        "rss_mb": round(rss, 1),
        "idle_cpu_percent": round(idle_cpu, 3),
        "reads": READS,
        "idle_s": IDLE_S,
    }
    print(f"{READS} taps through pcscd, the daemon, refsvc and mosquitto (TLS) to the gateway receiver")
    print(f"tap → summary opened at the receiver: p50 {figures['read_to_receiver_ms_p50']} ms")
    print(f"start → READY {figures['start_to_ready_ms']} ms; RSS after {READS} reads {figures['rss_mb']} MB")
    print(f"idle CPU over {IDLE_S:g} s: {figures['idle_cpu_percent']} %")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
