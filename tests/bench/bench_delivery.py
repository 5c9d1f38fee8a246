"""Delivery figures on the real stack (run by `make bench`; prints, asserts nothing).

- seal/open: the envelope alone (from bench_seal).
- publish_to_puback: one sealed summary published QoS 1 over TLS to mosquitto on loopback, to its PUBACK,
  with the device's certificate (from bench_publish).
- read_to_receiver: a virtual card tap to the gateway receiver holding the opened summary, through pcscd,
  the daemon (`mynabox run` as a subprocess, default consent), the reference service, mosquitto with TLS.

The daemon's own figures (start, memory, idle CPU, overhead) are in bench_daemon.py.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package

from bench_publish import publish_to_puback
from bench_seal import measure

from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import PATIENTS
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.notify import NotifySocket

READS = int(os.environ.get("BENCH_READS", "30"))
MYNABOX = str(Path(".venv/bin/mynabox").resolve())


def summaries(opened: list[tuple[float, Opened]]) -> list[float]:
    return [t for t, o in opened if o.kind is Kind.SUMMARY]


def main() -> int:
    seal = measure(200)
    with BoxStack(device_id="amb-bench", consent_default="oral", result_clear_s=1) as stack:
        assert stack.kit is not None and stack.broker is not None and stack.pcscd is not None
        stack.pcscd.use_in_process()
        body = {"summary": {"padding": "x" * 3000}}
        token = stack.kit.sealer(stack.device_id).seal(
            Kind.SUMMARY, body, now=datetime.now(UTC), clock_synced=True
        )
        puback = publish_to_puback(stack.kit, stack.broker.port, token.token, stack.device_id)
        opened: list[tuple[float, Opened]] = []
        receiver = stack.gateway_receiver(lambda o: opened.append((time.perf_counter(), o)))
        receiver.start()
        receiver.subscribed.wait(10)
        notify = NotifySocket(stack.dir / "notify.sock")
        env = dict(os.environ, **stack.env(), NOTIFY_SOCKET=str(notify.path))
        started = time.monotonic()
        daemon = subprocess.Popen(
            [MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=subprocess.DEVNULL
        )
        latencies = []
        registered = [p for p in PATIENTS if p.key != "not-registered"]
        try:
            while notify.first("READY=1", since=started) is None:
                time.sleep(0.005)
            for i in range(READS):
                card = VirtualMyNumberCard(registered[i % len(registered)].card_id)
                want = len(summaries(opened)) + 1
                stack.pcscd.wait_empty()
                tapped = time.perf_counter()
                server = VpcdCardServer(card, port=stack.pcscd.vpcd_port).start()
                deadline = time.monotonic() + 20
                while len(summaries(opened)) < want and time.monotonic() < deadline:
                    time.sleep(0.002)
                if len(summaries(opened)) >= want:
                    latencies.append((summaries(opened)[-1] - tapped) * 1000)
                server.remove()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            receiver.stop()
            notify.close()
    figures = {
        "seal_ms_p50": round(seal["seal_ms_p50"], 3),
        "open_ms_p50": round(seal["open_ms_p50"], 3),
        "publish_to_puback_ms_p50": round(statistics.median(puback), 3),
        "read_to_receiver_ms_p50": round(statistics.median(latencies), 1),
        "read_to_receiver_ms_max": round(max(latencies), 1),
        "reads": READS,
        "received": len(latencies),
    }
    print(f"seal {figures['seal_ms_p50']} ms, open {figures['open_ms_p50']} ms (p50)")
    print(f"publish → PUBACK (TLS, QoS 1, loopback) p50 {figures['publish_to_puback_ms_p50']} ms")
    print(f"{READS} taps through pcscd, the daemon, refsvc and mosquitto (TLS) to the gateway receiver")
    print(f"tap → summary opened at the receiver: p50 {figures['read_to_receiver_ms_p50']} ms")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
