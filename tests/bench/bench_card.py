"""Card read benchmark: our read service vs OpenSC on the same virtual card, through real pcscd + vpcd.

Run with `make bench` or `.venv/bin/python tests/bench/bench_card.py [N]` (not collected by pytest;
BENCH_N also sets N, default 30). The virtual card applies a latency model (a fixed turnaround per APDU
plus every command and response byte at an NFC bit rate) so that round trips cost what they would on a
real card. Prints human lines, then one JSON line last.

Three views of OpenSC, because `pkcs15-tool` is a process per read:
  * wall time per run (what a shell user waits; includes process start and OpenSC's card binding);
  * wall time minus the median `pkcs15-tool --list-readers` run: process start, library load and a PC/SC
    context, with no card access (checked: 0 APDUs). Not `--version`: measured, it binds the card
    (35 APDUs, ~130 ms here), so subtracting it would remove most of OpenSC's card work too;
  * modelled link time only: the sum of the card's latency model over the APDUs each reader sent. This
    is the fairest figure (no process or pcscd overheads on either side) and what a real tap costs.

Then the first tap (`mynabox read`, the daemon's first tap after a start: nothing known about the reader)
and later taps, next to the minimal exchange (SELECT AP, READ by SFI of the 4-byte DER header, one READ
of the rest; without SFI, SELECT EF + READ header + READ rest), on the issue's card model (4 ms turnaround,
212 kbit/s) with EF 000A padded to 2,100 bytes, on a card that reads by SFI and on one that refuses it.
Each runs as sessions on one connected card (no re-tap per read; the same for all three).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Generator

from mynabox.adapters.pcsc import PcscReader
from mynabox.app.cardread import JpkiReader
from mynabox.card import apdu
from mynabox.card.certcheck import TrustStore
from mynabox.card.jpki import AID_JPKI, EF_AUTH_CERT, ReaderCaps, read_auth_certificate
from mynabox.card.session import run
from mynabox.card.tlv import der_total_length
from mynabox_testkit import testca
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.pcscd import PrivatePcscd
from mynabox_testkit.vpcd import VpcdCardServer

CARD = "BENCHCARD00000000000001"
MODEL = Faults(latency_s=0.003, baud=424)  # 3 ms turnaround per APDU, 424 kbit/s on the air
TAP_MODEL = Faults(latency_s=0.004, baud=212, cert_ef_size=2100)  # the first-tap issue's card
TAP_CASES = {"sfi": TAP_MODEL, "no-sfi": Faults(**{**vars(TAP_MODEL), "sfi_refused": 0x6A86})}


class MeteredCard(VirtualMyNumberCard):
    """The virtual card, adding up the modelled link time of every exchange the vpcd server plays out."""

    model_s = 0.0

    def delay_for(self, command: bytes, response: bytes) -> float:
        seconds = super().delay_for(command, response)
        self.model_s += seconds
        return seconds


def ours(pcscd: PrivatePcscd, n: int, extended: bool) -> tuple[float, float, float]:
    """p50 ms per read (session time), mean APDUs, mean modelled link ms; steady state (caps known)."""
    card = MeteredCard(CARD, extended=extended, faults=MODEL)
    server = VpcdCardServer(card, port=pcscd.vpcd_port)
    times, apdus, model = [], [], []
    with PcscReader() as pcsc:
        service = JpkiReader(pcsc, trust=TrustStore.jlis([testca.test_ca_pem()]), hash_key=b"bench")
        for i in range(n + 1):  # the first read learns the reader's caps and is not counted
            pcscd.wait_empty()
            card.model_s = 0.0
            server.start()
            try:
                report = service.read(timeout=10, clock_synced=True)
            finally:
                server.remove()
            if report is None or report.jpki.certificate != testca.auth_certificate(CARD):
                raise RuntimeError("the card was not read")
            if i:
                times.append(report.ms)
                apdus.append(report.jpki.apdus)
                model.append(card.model_s * 1000)
    return statistics.median(times), statistics.mean(apdus), statistics.mean(model)


def minimal_exchange(sfi: bool) -> Generator[bytes, bytes, int]:
    """The fewest APDUs that read the certificate exactly: SELECT AP, (SELECT EF,) the 4-byte DER header,
    one extended READ of the rest. A yardstick, not a reader: no checks beyond getting the length."""
    yield apdu.select_aid(AID_JPKI).encode()
    if not sfi:
        yield apdu.select_ef(EF_AUTH_CERT).encode()
    head = apdu.read_binary_sfi(EF_AUTH_CERT, 4) if sfi else apdu.read_binary(0, 4)
    total = der_total_length((yield head.encode())[:-2])
    yield apdu.read_binary(4, total - 4, extended=True).encode()
    return 3 if sfi else 4


def taps(pcscd: PrivatePcscd, n: int, faults: Faults) -> dict[str, dict[str, float]]:
    """Minimal exchange, our first tap (no caps known) and our later taps: APDUs, p50 ms, link ms."""
    card = MeteredCard(CARD, faults=faults)
    figures: dict[str, dict[str, float]] = {}
    pcscd.wait_empty()
    with VpcdCardServer(card, port=pcscd.vpcd_port), PcscReader() as pcsc:
        connected = pcsc.wait_for_card(timeout=10)
        if connected is None:
            raise RuntimeError("the card was not announced")
        with connected:
            learned = run(read_auth_certificate(), connected).caps

            def measure(name: str, session: Callable[[], Generator[bytes, bytes, object]]) -> None:
                times, apdus, model = [], [], []
                for _ in range(n):
                    card.model_s, before = 0.0, card.apdu_count
                    started = time.perf_counter()
                    run(session(), connected)
                    times.append((time.perf_counter() - started) * 1000)
                    apdus.append(card.apdu_count - before)
                    model.append(card.model_s * 1000)
                figures[name] = {
                    "apdus": statistics.mean(apdus),
                    "ms_p50": statistics.median(times),
                    "link_ms": statistics.mean(model),
                }

            sfi = faults.sfi_refused is None
            measure("minimal", lambda: minimal_exchange(sfi))
            measure("first_tap", lambda: read_auth_certificate(ReaderCaps()))
            measure("later_tap", lambda: read_auth_certificate(learned))
    for name in ("first_tap", "later_tap"):
        figures[name]["link_ratio"] = figures[name]["link_ms"] / figures["minimal"]["link_ms"]
        figures[name]["ratio"] = figures[name]["ms_p50"] / figures["minimal"]["ms_p50"]
    return figures


def opensc(pcscd: PrivatePcscd, n: int) -> tuple[float, float, float, float]:
    """p50 ms per pkcs15-tool run, mean APDUs, p50 startup ms, mean modelled link ms."""
    card = MeteredCard(CARD, faults=MODEL)
    env = dict(os.environ, **pcscd.env)
    times, apdus, startup, model = [], [], [], []
    pcscd.wait_empty()
    with VpcdCardServer(card, port=pcscd.vpcd_port):
        time.sleep(1.0)  # pcscd has powered the card up
        for _ in range(n):
            before, card.model_s = card.apdu_count, 0.0
            started = time.perf_counter()
            out = subprocess.run(
                ["pkcs15-tool", "--read-certificate", "01"], env=env, capture_output=True, check=False
            )
            times.append((time.perf_counter() - started) * 1000)
            if out.returncode != 0 or b"BEGIN CERTIFICATE" not in out.stdout:
                raise RuntimeError(f"pkcs15-tool failed (exit {out.returncode})")
            apdus.append(card.apdu_count - before)
            model.append(card.model_s * 1000)
            before = card.apdu_count
            started = time.perf_counter()
            subprocess.run(["pkcs15-tool", "--list-readers"], env=env, capture_output=True, check=False)
            startup.append((time.perf_counter() - started) * 1000)
            if card.apdu_count != before:
                raise RuntimeError("the startup baseline touched the card")
    return (
        statistics.median(times),
        statistics.mean(apdus),
        statistics.median(startup),
        statistics.mean(model),
    )


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_N", "30"))
    with PrivatePcscd() as pcscd:
        pcscd.use_in_process()
        ext_ms, ext_apdus, ext_model = ours(pcscd, n, extended=True)
        short_ms, short_apdus, short_model = ours(pcscd, n, extended=False)
        o_ms, o_apdus, o_start, o_model = opensc(pcscd, n)
        tap_figures = {case: taps(pcscd, n, faults) for case, faults in TAP_CASES.items()}
    length = len(testca.auth_certificate(CARD))
    goal_short = 2 + -(-length // 256)
    o_no_start = o_ms - o_start
    print(
        f"latency model: {MODEL.latency_s * 1000:.0f} ms turnaround per APDU + every byte at "
        f"{MODEL.baud} kbit/s (vpcd server sleeps it)"
    )
    print(f"certificate: {length} bytes; {n} reads each; ours in steady state (reader caps remembered)")
    print(f"mynabox, extended Le : {ext_apdus:.1f} APDUs/read (goal ≤ 3), p50 {ext_ms:.1f} ms, ", end="")
    print(f"link {ext_model:.1f} ms")
    print(
        f"mynabox, short Le    : {short_apdus:.1f} APDUs/read (goal ≤ {goal_short}), p50 {short_ms:.1f} ms, "
        f"link {short_model:.1f} ms"
    )
    print(f"OpenSC pkcs15-tool   : {o_apdus:.1f} APDUs/read, p50 {o_ms:.1f} ms, link {o_model:.1f} ms")
    print(
        f"  its process start (pkcs15-tool --list-readers) p50 {o_start:.1f} ms; without: {o_no_start:.1f} ms"
    )
    print(
        f"ratio (extended) vs OpenSC: wall {ext_ms / o_ms:.3f}, without its start {ext_ms / o_no_start:.3f}, "
        f"link time only {ext_model / o_model:.3f} (goal ≤ 0.5)"
    )
    print(
        f"first and later taps: {TAP_MODEL.latency_s * 1000:.0f} ms turnaround + {TAP_MODEL.baud} kbit/s, "
        f"EF 000A padded to {TAP_MODEL.cert_ef_size} bytes (goal: every tap ≤ 1.1 × the minimal exchange)"
    )
    for case, figures in tap_figures.items():
        m = figures["minimal"]
        print(f"  {case:<6} minimal   : {m['apdus']:.0f} APDUs, link {m['link_ms']:.1f} ms, ", end="")
        print(f"p50 {m['ms_p50']:.1f} ms")
        for name in ("first_tap", "later_tap"):
            f = figures[name]
            label = name.replace("_", " ")
            print(
                f"  {case:<6} {label:<10}: {f['apdus']:.0f} APDUs, link {f['link_ms']:.1f} ms "
                f"({f['link_ratio']:.3f} ×), p50 {f['ms_p50']:.1f} ms ({f['ratio']:.3f} ×)"
            )
    print(
        json.dumps(
            {
                "taps": {
                    case: {name: {k: round(v, 3) for k, v in f.items()} for name, f in figures.items()}
                    for case, figures in tap_figures.items()
                },
                "tap_model": {
                    "latency_s": TAP_MODEL.latency_s,
                    "baud_kbit_s": TAP_MODEL.baud,
                    "cert_ef_size": TAP_MODEL.cert_ef_size,
                },
                "apdus_per_read": round(ext_apdus, 2),
                "ms_per_read_p50": round(ext_ms, 2),
                "link_ms_per_read": round(ext_model, 2),
                "short_apdus_per_read": round(short_apdus, 2),
                "short_ms_per_read_p50": round(short_ms, 2),
                "short_link_ms_per_read": round(short_model, 2),
                "opensc_apdus_per_read": round(o_apdus, 2),
                "opensc_ms_per_read_p50": round(o_ms, 2),
                "opensc_startup_ms_p50": round(o_start, 2),
                "opensc_ms_without_startup_p50": round(o_no_start, 2),
                "opensc_link_ms_per_read": round(o_model, 2),
                "ratio_vs_opensc": round(ext_ms / o_ms, 3),
                "ratio_vs_opensc_without_startup": round(ext_ms / o_no_start, 3),
                "ratio_vs_opensc_link_only": round(ext_model / o_model, 3),
                "cert_bytes": length,
                "short_apdus_goal": goal_short,
                "latency_model": {"latency_s": MODEL.latency_s, "baud_kbit_s": MODEL.baud},
                "n": n,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
