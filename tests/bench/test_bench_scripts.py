"""The benchmarks still run and print the figures the issues name (tiny sizes; no figure is judged).

`make bench` runs them at full size; this only keeps them from rotting between bench runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow]
BENCH = Path(__file__).parent


def last_json(script: str, **env: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script)],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def finite(figures: dict[str, object], *keys: str) -> None:
    for key in keys:
        value = figures[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value >= 0, (key, value)


def test_bench_daemon_prints_the_appliance_figures() -> None:
    figures = last_json(
        "bench_daemon.py", BENCH_READS="3", BENCH_IDLE_S="1", BENCH_LINK_TAPS="1", BENCH_RTTS_MS="30"
    )
    finite(
        figures,
        "start_to_ready_ms",
        "rss_mb",
        "rss_at_ready_mb",
        "ours_over_floor_mb",
        "idle_cpu_percent",
        "tap_to_oled_result_ms_p50",
        "overhead_ms_p50",
    )
    assert figures["results_shown"] == figures["delivered"] == 3
    links = figures["links"]
    assert isinstance(links, dict)
    for client in ("warm", "peer"):
        over_link = links["30"][client]
        finite(over_link, "tap_to_oled_flags_ms_p50", "lookup_ms_p50", "publish_to_puback_ms_p50")
        assert over_link["shown"] == over_link["delivered"] == 1


def test_bench_lookup_prints_the_link_figures() -> None:
    figures = last_json("bench_lookup.py", BENCH_ROUNDS="3", BENCH_LINK_ROUNDS="2", BENCH_RTTS_MS="30")
    finite(figures, "lookup_ms_p50", "kept_connection_lookup_ms_p50")
    links = figures["links"]
    assert isinstance(links, dict)
    finite(links["30"], "warm_first_rtts", "warm_later_rtts_p50", "peer_later_rtts_p50", "warm_reconnect_ms")


def test_bench_delivery_prints_the_delivery_figures() -> None:
    figures = last_json("bench_delivery.py", BENCH_READS="2")
    finite(figures, "seal_ms_p50", "open_ms_p50", "publish_to_puback_ms_p50", "read_to_receiver_ms_p50")
    assert figures["received"] == 2


def test_bench_card_prints_the_card_figures() -> None:
    figures = last_json("bench_card.py", BENCH_N="1")
    finite(figures, "apdus_per_read", "ms_per_read_p50", "opensc_ms_per_read_p50", "ratio_vs_opensc")
    assert figures["apdus_per_read"] == 3 and figures["short_apdus_per_read"] == 7
    taps = figures["taps"]
    assert isinstance(taps, dict) and set(taps) == {"sfi", "no-sfi"}
    for case in taps.values():
        finite(case["first_tap"], "link_ms", "link_ratio", "ms_p50")
        finite(case["later_tap"], "link_ms", "link_ratio", "ms_p50")
        assert case["minimal"]["apdus"] in (3, 4)


def test_bench_receive_prints_the_receiver_figures() -> None:
    figures = last_json("bench_receive.py", BENCH_N="1")
    for case in ("typical", "records", "rows", "marks"):
        each = figures[case]
        assert isinstance(each, dict)
        finite(each, "open_ms_p50", "terminal_ms_p50", "page_ms_p50", "files_ms_p50", "total_cpu_ms_p50")
        if case != "typical":  # filled to the limit, not past it
            assert 250_000 < each["token_bytes"] <= 262_144, (case, each["token_bytes"])


def test_bench_imports_accounts_for_every_library() -> None:
    figures = last_json("bench_imports.py")
    steps = figures["steps"]
    assert isinstance(steps, dict) and "gpiozero" in steps and "cryptography (own OpenSSL)" in steps
    finite(figures, "rss_after_imports_mb", "prescribed_floor_mb")
    assert isinstance(figures["debian_cryptography_saves_mb"], float)  # install-deps.sh installs the peer
    assert all(step["modules"] > 0 for step in steps.values())


def test_bench_fleet_prints_the_fleet_figures() -> None:
    figures = last_json(
        "bench_fleet.py",
        BENCH_VEHICLES="4",
        BENCH_GATEWAYS="2",
        BENCH_PER_PROCESS="2",
        BENCH_READS="2",
        BENCH_SPREAD_S="1",
    )
    finite(
        figures,
        "messages_per_s",
        "publish_to_central_ms_p50",
        "publish_to_central_ms_p99",
        "rss_per_vehicle_kb",
    )
    assert figures["arrived"] == figures["messages"] == 8
    assert figures["online"] == figures["vehicles"] == 4 and figures["worker_processes"] == 2


def test_bench_fleet_fails_loudly_when_vehicles_stay_offline() -> None:
    # each worker holds 1024 descriptors first: paho's select() loop can't run their vehicles' sockets
    env = dict(BENCH_VEHICLES="2", BENCH_GATEWAYS="1", BENCH_RESERVE_FDS="1024", BENCH_ONLINE_TIMEOUT_S="5")
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_fleet.py")],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "VEHICLES ONLINE: 0/2" in done.stdout
    assert "FAIL: only 0 of 2 vehicles came online" in done.stderr and "FD_SETSIZE" in done.stderr
