"""Summary lookup figures: HTTPS+mTLS round trip to the reference service on loopback, strict parsing and
flag derivation; then the same lookups over an emulated mobile link (`support.linkemu`) at 30, 100
and 300 ms RTT, with the kept-warm connection and with connection-per-lookup (the peer, the old client):
the first lookup of a new client (cold: TCP + TLS + request), the first after `start()` warmed it up,
later lookups, and a reconnect after the service hung up (resumed TLS session). Round trips = (time on
the link - time on loopback) / RTT. Prints figures; asserts nothing. Last line: JSON.

Env: BENCH_ROUNDS (200, loopback), BENCH_LINK_ROUNDS (20 per RTT and client), BENCH_RTTS_MS (30,100,300).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package

from mynabox.adapters.summary_client import HttpsSummaryClient
from mynabox.summary.flags import derive_flags
from mynabox.summary.model import Summary
from mynabox.summary.port import Found
from mynabox_testkit import patients
from mynabox_testkit.refsvc import ReferenceService
from mynabox_testkit.tlsfiles import TestPki, certificate_with_cn, make_test_pki
from support.linkemu import LinkEmulator
from support.wait import wait_for

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))
LINK_ROUNDS = int(os.environ.get("BENCH_LINK_ROUNDS", "20"))
RTTS_MS = [int(v) for v in os.environ.get("BENCH_RTTS_MS", "30,100,300").split(",") if v]


def p(values: list[float], q: float) -> float:
    return round(sorted(values)[min(len(values) - 1, int(q * len(values)))], 3)


def timed(client: HttpsSummaryClient, cert: bytes) -> float:
    t = time.perf_counter()
    result = client.lookup(cert)
    if not isinstance(result, Found):
        raise SystemExit(f"lookup failed: {result}")
    return (time.perf_counter() - t) * 1000


def make_client(url: str, pki: TestPki, *, warm: bool) -> HttpsSummaryClient:
    files = pki.client("device-1")
    return HttpsSummaryClient(
        url,
        ca_file=pki.ca_cert,
        client_cert=files.cert,
        client_key=files.key,
        keepalive_s=50.0 if warm else None,
        timeout_s=10.0,
        limit_s=30.0,
    )


def over_link(service: ReferenceService, pki: TestPki, cert: bytes, rtt_ms: int, service_ms: float) -> dict:
    """One RTT: both clients through the emulated link; times in ms and in round trips."""
    rtt = rtt_ms / 1000
    figures: dict[str, float] = {}
    with LinkEmulator(("127.0.0.1", service.port), rtt_s=rtt) as link:
        url = f"https://127.0.0.1:{link.port}"
        for name, warm in (("warm", True), ("peer", False)):
            client = make_client(url, pki, warm=warm)
            first = timed(client, cert)  # a cold client: TCP, TLS and the request
            later = [timed(client, cert) for _ in range(LINK_ROUNDS)]
            figures[f"{name}_first_ms"] = round(first, 1)
            figures[f"{name}_later_ms_p50"] = round(statistics.median(later), 1)
            if warm:
                service.hang_up_all()  # the service restarts: a new connection, the TLS session resumed
                resumed_before = service.stats["resumed"]
                wait_for(lambda c=client: c._pool.idle is None or not c._pool.idle.clean(), 5)
                figures["warm_reconnect_ms"] = round(timed(client, cert), 1)
                figures["warm_reconnect_resumed"] = service.stats["resumed"] - resumed_before
                client.close()
                started = make_client(url, pki, warm=True)
                started.start()  # the daemon's start: connected before the first tap
                wait_for(lambda c=started: c._pool.idle is not None, 10)
                figures["warm_first_after_start_ms"] = round(timed(started, cert), 1)
                started.close()
            else:
                client.close()
    for key in list(figures):
        if key.endswith(("_ms", "_ms_p50")):
            figures[key.replace("_ms", "_rtts")] = round((figures[key] - service_ms) / rtt_ms, 1)
    return figures


def main() -> None:
    today = date.today()
    with tempfile.TemporaryDirectory() as d:
        pki = make_test_pki(d)
        files = pki.client("device-1")
        with ReferenceService(
            cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert
        ) as service:
            client = HttpsSummaryClient(
                service.base_url, ca_file=pki.ca_cert, client_cert=files.cert, client_key=files.key
            )
            cert = certificate_with_cn(patients.patient("warfarin-elderly").card_id)
            lookups = [timed(client, cert) for _ in range(ROUNDS)]
            client.close()
            warm = make_client(service.base_url, pki, warm=True)
            timed(warm, cert)
            kept = [timed(warm, cert) for _ in range(ROUNDS)]  # the service's own time, about
            warm.close()
            links = {rtt: over_link(service, pki, cert, rtt, statistics.median(kept)) for rtt in RTTS_MS}
    summary = patients.summary_for(patients.patient("dialysis"), today)
    assert summary is not None
    text = json.dumps(summary.to_json(), ensure_ascii=False)
    parse, flags = [], []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        Summary.from_json(json.loads(text))
        parse.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        derive_flags(summary, today=today)
        flags.append((time.perf_counter() - t) * 1000)
    figures: dict[str, object] = {
        "lookup_ms_p50": round(statistics.median(lookups), 3),
        "kept_connection_lookup_ms_p50": round(statistics.median(kept), 3),
        "lookup_ms_p95": p(lookups, 0.95),
        "summary_parse_ms_p50": round(statistics.median(parse), 3),
        "derive_flags_ms_p50": round(statistics.median(flags), 3),
        "summary_json_bytes": len(text.encode()),
    }
    print(
        f"summary lookup over HTTPS+mTLS on loopback, {ROUNDS} rounds: new connection each "
        f"{figures['lookup_ms_p50']} ms, kept connection {figures['kept_connection_lookup_ms_p50']} ms"
    )
    print(f"over an emulated link, {LINK_ROUNDS} later lookups per RTT; ms (round trips)")
    print(
        "RTT ms | first, cold | first after start | later p50 | reconnect (resumed) | peer first | peer later"
    )
    for rtt, f in links.items():
        print(
            f"{rtt:6} | {f['warm_first_ms']} ({f['warm_first_rtts']}) "
            f"| {f['warm_first_after_start_ms']} ({f['warm_first_after_start_rtts']}) "
            f"| {f['warm_later_ms_p50']} ({f['warm_later_rtts_p50']}) "
            f"| {f['warm_reconnect_ms']} ({f['warm_reconnect_rtts']}, {f['warm_reconnect_resumed']}) "
            f"| {f['peer_first_ms']} ({f['peer_first_rtts']}) "
            f"| {f['peer_later_ms_p50']} ({f['peer_later_rtts_p50']})"
        )
    figures["links"] = {str(rtt): f for rtt, f in links.items()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
