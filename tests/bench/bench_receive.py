"""What `mynabox receive` does on paho's network thread per accepted message, for the largest messages a box
may send (printed, never asserted). Last line is JSON.

    .venv/bin/python tests/bench/bench_receive.py [iterations]    (or BENCH_N; 10)

The receiver hands each message to its sink on the MQTT client's network thread and sends the PUBACK after:
while a page renders, no other message is read or acknowledged. This times each step for sealed messages of
the largest allowed size (`MAX_MESSAGE_BYTES`), three ways of filling them (and `typical`, a real-sized
summary, warfarin-elderly's, for comparison):

- `records`: the realistic worst, the synthetic oversize history (1,000 prescriptions, 300 visits and
  treatments) trimmed evenly until it seals within the limit;
- `rows`: the most table rows the limit allows (short texts: every list of the schema as full as fits);
- `marks`: the fewest rows, every text 200 characters of combining-mark stacks (the wrap and stack bounds
  work per character).

No `flags` in the bodies: the page and the terminal derive them, the slower path a box may force.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from mynabox.gateway.formatting import format_opened
from mynabox.gateway.pages import PageStore
from mynabox.gateway.sink import write_fhir, write_json
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, Kind
from mynabox.payload.keys import generate_device_key
from mynabox.payload.seal import MessageTooLarge, Opened, Opener, Sealer
from mynabox_testkit import patients

DAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 1, 30, tzinfo=UTC)
DEVICE = "amb-bench-01"
READ = {
    "card_hash": "0123456789abcdef",
    "card_type": "jpki",
    "certificate_check": {"status": "ok"},
    "read_at": NOW.isoformat(),
    "consent": "oral-consent",
}
LISTS = ("visits", "dispensings", "medications", "treatments")
MAX_ITEMS = 1000  # the summary schema's maxItems


def _oversize() -> dict[str, Any]:
    summary = patients.summary_for(patients.OVERSIZE, DAY)
    assert summary is not None
    return summary.to_json()


def records(fraction: float) -> dict[str, Any]:
    doc = _oversize()
    for key in LISTS:
        doc[key] = doc[key][: int(len(doc[key]) * fraction)]
    return doc


def rows(fraction: float) -> dict[str, Any]:
    doc = _oversize()
    short: dict[str, dict[str, object]] = {
        "visits": {"date": "2026-11-01", "facility": "A", "department": "B", "inpatient": False},
        "dispensings": {
            "date": "2026-11-01",
            "drug_name": "C",
            "yj_code": "2171022F2144",
            "dose": "D",
            "days": 1,
            "pharmacy": "E",
        },
        "medications": {
            "date": "2026-11-01",
            "drug_name": "C",
            "yj_code": "2171022F2144",
            "dose": "D",
            "days": 1,
            "prescriber": "F",
            "pharmacy": "E",
        },
        "treatments": {"date": "2026-11-01", "description": "G", "facility": "A"},
    }
    for key in LISTS:
        doc[key] = [dict(short[key]) for _ in range(int(MAX_ITEMS * fraction))]
    return doc


def marks(fraction: float) -> dict[str, Any]:
    doc = records(fraction)
    stack = ("\u30a2" + "\u0301\u0302\u0303\u0308" * 4) * 10  # 200 characters: ア with 16 marks, 10 times
    for key in LISTS:
        for item in doc[key]:
            for field, value in item.items():
                if isinstance(value, str) and field not in ("date", "yj_code"):
                    item[field] = stack
    return doc


Fill = Callable[[float], dict[str, Any]]


def _largest(fill: Fill, seal: Callable[[dict[str, Any]], bytes | None]) -> bytes:
    """The fullest `fill(fraction)` the sealer takes (within MAX_MESSAGE_BYTES), by bisection on fraction."""
    low, high, best = 0.0, 1.0, seal(fill(0.0))
    for _ in range(14):
        middle = (low + high) / 2
        token = seal(fill(middle))
        if token is not None:
            low, best = middle, token
        else:
            high = middle
    assert best is not None
    return best


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _time(action: Callable[[], object], iterations: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each run (CPU: what it costs without the other sessions' load)."""
    wall, cpu = [], []
    for _ in range(iterations):
        t0, c0 = time.perf_counter(), time.thread_time()
        action()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    return wall, cpu


def typical(_fraction: float) -> dict[str, Any]:
    summary = patients.summary_for(patients.patient("warfarin-elderly"), DAY)
    assert summary is not None
    return summary.to_json()


def _files(out: Path, opened: Opened) -> None:
    write_json(out, opened)
    write_fhir(out, opened)


CASES: tuple[tuple[str, Fill], ...] = (
    ("typical", typical),
    ("records", records),
    ("rows", rows),
    ("marks", marks),
)


def measure(iterations: int = 10) -> dict[str, Any]:
    device, gateway = generate_device_key(), generate_device_key()
    sealer = Sealer(DEVICE, device, gateway.public_key())
    opener = Opener(
        gateway,
        {DEVICE: device.public_key()},
        max_age=timedelta(days=7),
        max_skew=timedelta(minutes=5),
        max_size=MAX_MESSAGE_BYTES,
    )

    def seal(summary: dict[str, Any]) -> bytes | None:
        body = {"summary": summary, "read": copy.deepcopy(READ)}
        try:
            return sealer.seal(Kind.SUMMARY, body, now=NOW, clock_synced=True, seq=1).token
        except MessageTooLarge:
            return None

    figures: dict[str, Any] = {"iterations": iterations}
    with tempfile.TemporaryDirectory() as out:
        for name, fill in CASES:
            token = _largest(fill, seal)
            opened: Opened = opener.open(token, now=NOW)
            store = PageStore(retention=timedelta(hours=24), clock=lambda: NOW)
            steps: dict[str, Callable[[], object]] = {
                "open": functools.partial(opener.open, token, now=NOW),
                "terminal": functools.partial(format_opened, opened, today=DAY),
                "page": functools.partial(store.add, opened),
                "files": functools.partial(_files, Path(out), opened),
            }
            timed = {step: _time(action, iterations) for step, action in steps.items()}
            spent = {step: wall for step, (wall, _cpu) in timed.items()}
            total = [sum(each) for each in zip(*spent.values(), strict=True)]
            cpu = [sum(each) for each in zip(*(c for _wall, c in timed.values()), strict=True)]
            summary = opened.body["summary"]
            assert isinstance(summary, dict)
            figures[name] = {
                "token_bytes": len(token),
                "rows": sum(len(summary[key]) for key in LISTS),
                "page_bytes": len(store.page(opened.message_id) or b""),
                **{f"{step}_ms_p50": round(statistics.median(v), 1) for step, v in spent.items()},
                "total_ms_p50": round(statistics.median(total), 1),
                "total_ms_max": round(max(total), 1),
                "total_ms_p95": round(_p(total, 95), 1),
                "total_cpu_ms_p50": round(statistics.median(cpu), 1),
            }
    return figures


def main() -> int:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_N", "10"))
    figures = measure(iterations)
    for name, _fill in CASES:
        f = figures[name]
        print(
            f"{name}: {f['token_bytes']:,} B sealed, {f['rows']} rows, page {f['page_bytes']:,} B; "
            f"open {f['open_ms_p50']} + terminal {f['terminal_ms_p50']} + page {f['page_ms_p50']} "
            f"+ files {f['files_ms_p50']} ms = {f['total_ms_p50']} ms p50 ({f['total_cpu_ms_p50']} ms CPU), "
            f"{f['total_ms_max']} ms max"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
