"""Card read benchmark: our reader vs OpenSC on the same virtual card, through the real pcscd + vpcd.

Run with `make bench` (not collected by pytest). The virtual card applies a latency model (per-APDU
turnaround plus bytes at an NFC bit rate) so that round trips cost what they would on a real card.
Prints human lines, then one JSON line last.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from mynabox.adapters.pcsc import PcscReader
from mynabox.card.jpki import ReaderCaps, read_auth_certificate
from mynabox.card.session import run
from mynabox.testing import testca
from mynabox.testing.mynacard import Faults, VirtualMyNumberCard
from mynabox.testing.pcscd import PrivatePcscd
from mynabox.testing.vpcd import VpcdCardServer

CARD = "BENCHCARD00000000000001"
N = int(os.environ.get("BENCH_N", "20"))
MODEL = Faults(latency_s=0.003, baud=424)  # 3 ms turnaround per APDU, 424 kbit/s on the air


def pcscd_server_retap(pcscd: PrivatePcscd) -> None:
    """Pull the card and present it again (a new tap), once pcscd has seen the removal."""
    server = _current[0]
    server.remove()
    pcscd.wait_empty()
    server.start()


_current: list[VpcdCardServer] = []


def ours_taps(pcscd: PrivatePcscd, extended: bool) -> tuple[float, float]:
    card = VirtualMyNumberCard(CARD, extended=extended, faults=MODEL)
    server = VpcdCardServer(card, port=pcscd.vpcd_port)
    _current[:] = [server]
    times, apdus = [], []
    caps = ReaderCaps()
    pcscd.wait_empty()
    server.start()
    try:
        with PcscReader() as reader:
            for _ in range(N + 1):
                connected = reader.wait_for_card(timeout=10)
                if connected is None:
                    raise RuntimeError("card not handed out")
                with connected:
                    started = time.perf_counter()
                    result = run(read_auth_certificate(caps), connected)
                    times.append((time.perf_counter() - started) * 1000)
                    apdus.append(result.apdus)
                    assert result.certificate == testca.auth_certificate(CARD)
                    caps = result.caps  # remembered per reader, as the daemon does
                pcscd_server_retap(pcscd)
    finally:
        server.remove()
    return statistics.median(times[1:]), statistics.mean(apdus[1:])


def opensc(pcscd: PrivatePcscd) -> tuple[float, float, float]:
    card = VirtualMyNumberCard(CARD, faults=MODEL)
    env = dict(os.environ, **pcscd.env)
    times, apdus, startup = [], [], []
    pcscd.wait_empty()
    with VpcdCardServer(card, port=pcscd.vpcd_port):
        time.sleep(1.0)
        for _ in range(N):
            before = card.apdu_count
            started = time.perf_counter()
            out = subprocess.run(
                ["pkcs15-tool", "--read-certificate", "01"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            times.append((time.perf_counter() - started) * 1000)
            if out.returncode != 0:
                raise RuntimeError(f"pkcs15-tool failed: {out.stderr.strip()}")
            apdus.append(card.apdu_count - before)
            started = time.perf_counter()
            subprocess.run(["pkcs15-tool", "--version"], env=env, capture_output=True, check=False)
            startup.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), statistics.mean(apdus), statistics.median(startup)


def main() -> int:
    with PrivatePcscd() as pcscd:
        pcscd.use_in_process()
        ext_ms, ext_apdus = ours_taps(pcscd, extended=True)
        short_ms, short_apdus = ours_taps(pcscd, extended=False)
        o_ms, o_apdus, o_start = opensc(pcscd)
    length = len(testca.auth_certificate(CARD))
    per_apdu_model_ms = MODEL.latency_s * 1000
    print(
        f"virtual card latency model: {MODEL.latency_s * 1000:.0f} ms per APDU + bytes at {MODEL.baud} kbit/s"
    )
    print(f"certificate: {length} bytes; {N} reads each (steady state, caps remembered)")
    print(f"mynabox, extended Le : {ext_apdus:.1f} APDUs/read, p50 {ext_ms:.1f} ms")
    goal = 2 + -(-length // 256)
    print(f"mynabox, short reads : {short_apdus:.1f} APDUs/read, p50 {short_ms:.1f} ms (goal ≤ {goal})")
    print(f"OpenSC pkcs15-tool   : {o_apdus:.1f} APDUs/read, p50 {o_ms:.1f} ms (start ≈ {o_start:.1f} ms)")
    fair = max(o_ms - o_start, o_apdus * per_apdu_model_ms)
    print(f"OpenSC minus its process start ≈ {fair:.1f} ms; ratio on that basis {ext_ms / fair:.3f}")
    print(
        json.dumps(
            {
                "apdus_per_read": round(ext_apdus, 2),
                "ms_per_read_p50": round(ext_ms, 2),
                "short_apdus_per_read": round(short_apdus, 2),
                "short_ms_per_read_p50": round(short_ms, 2),
                "opensc_apdus_per_read": round(o_apdus, 2),
                "opensc_ms_per_read_p50": round(o_ms, 2),
                "opensc_ms_without_startup_p50": round(fair, 2),
                "ratio_vs_opensc": round(ext_ms / o_ms, 3),
                "ratio_vs_opensc_without_startup": round(ext_ms / fair, 3),
                "cert_bytes": length,
                "n": N,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
