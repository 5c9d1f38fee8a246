"""Seal and open timings (printed, never asserted). Last line is JSON: seal_ms_p50, open_ms_p50, ...

    .venv/bin/python tests/bench/bench_seal.py [iterations]

``measure(iterations)`` is importable by bench_delivery. The body is summary-sized (polypharmacy elderly:
~30 drug lines, Japanese text), so the figure reflects a real seal, not an empty one.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from mynabox.payload.envelope import Kind
from mynabox.payload.keys import generate_device_key
from mynabox.payload.seal import Opener, Sealer


def _body() -> dict[str, object]:
    drugs = [
        {
            "name": name,
            "dose": "1日1回 1錠",
            "days": 28,
            "prescriber": "東京第一病院",
            "date": "2026-03-0" + str(n % 9 + 1),
        }
        for n, name in enumerate(
            ["ワルファリンカリウム錠1mg", "インスリン グラルギン", "アムロジピン錠5mg"] * 10
        )
    ]
    return {"patient": {"name": "山田 花子", "kana": "ヤマダ ハナコ", "birth": "1941-05-03"}, "drugs": drugs}


def _p(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def measure(iterations: int = 300) -> dict[str, float]:
    device, gateway = generate_device_key(), generate_device_key()
    sealer = Sealer("amb-bench-01", device, gateway.public_key())
    opener = Opener(
        gateway,
        {"amb-bench-01": device.public_key()},
        max_age=timedelta(days=7),
        max_skew=timedelta(minutes=5),
        max_size=1 << 20,
    )
    body, now = _body(), datetime.now(UTC)
    seal_ms, open_ms, size = [], [], 0
    for i in range(iterations):
        t0 = time.perf_counter()
        sealed = sealer.seal(Kind.SUMMARY, body, now=now, clock_synced=True, seq=i + 1)
        t1 = time.perf_counter()
        opener.open(sealed.token, now=now)
        t2 = time.perf_counter()
        seal_ms.append((t1 - t0) * 1000)
        open_ms.append((t2 - t1) * 1000)
        size = len(sealed.token)
    return {
        "seal_ms_p50": round(statistics.median(seal_ms), 3),
        "seal_ms_p95": round(_p(seal_ms, 95), 3),
        "open_ms_p50": round(statistics.median(open_ms), 3),
        "open_ms_p95": round(_p(open_ms, 95), 3),
        "token_bytes": size,
        "iterations": iterations,
    }


def main() -> int:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    figures = measure(iterations)
    print(f"sealed summary: {figures['token_bytes']} bytes, {iterations} iterations")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
