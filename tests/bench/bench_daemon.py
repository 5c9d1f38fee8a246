"""The daemon's figures on the real stack (run by `make bench`; prints, asserts nothing).

`mynabox run` as a subprocess with a NOTIFY_SOCKET of ours, pcscd + vpcd with the virtual card, the
reference summary service and mosquitto with TLS on loopback, default consent (no button wait):

- start_to_ready_ms: process start to READY=1.
- tap_to_oled_result_ms_p50: the virtual card connecting to vpcd to the daemon's `read result-shown` log line
  (written after the OLED was drawn) arriving here; includes pcscd's presence poll (≈ 400 ms with vpcd; a
  CCID reader reports a card by interrupt). present_to_oled_result_ms_p50 is the daemon's own share.
- overhead_ms_p50: card present → PUBACK minus card I/O and lookup (and consent wait), from the daemon's
  `read delivered` lines (mynabox.app.readtiming).
- The daemon's pins are gpiozero's mock pins (no GPIO here); `boxpins/sitecustomize.py`, on its PYTHONPATH,
  makes them keep their current state only, as the box's lgpio pins do, not a history of every state for
  tests (≈ 0.1 MB per 100 reads the box never holds). Nothing else of the daemon changes.
- rss_mb after READS reads (with the anonymous / file-backed split), idle_cpu_percent over IDLE_S idle.
- ours_over_floor_mb: that RSS minus the floor, a fresh interpreter with the prescribed libraries imported
  (`bench_imports.floor`): what our code, its threads, connections and caches hold; its anonymous and
  file-backed parts apart (ours_anon_over_floor_mb, ours_file_over_floor_mb). The floor is measured before
  the daemon starts and again after it stopped (floor_after_mb), each time on a settled page cache, as the
  daemon starts on one (`pagecache`: the cached pages of every file they map dropped first, so each process
  faults them in as order-0 pages, as the box's kernel caches them); large_folio_mb says how much of the
  daemon's file-backed RSS was still in large folios (≈ 0: the state held). Without that the figure moved by
  more than 1 MB with what the host had done to its page cache. Each floor is the median of 5 processes;
  the daemon is one, and where ASLR puts its libraries against the 64 KiB fault-around windows moves its
  file-backed RSS by up to ≈ 0.2 MB from run to run (as on the box).

The daemon runs with the unit's Environment= settings (systemd/mynabox.service), as systemd starts it.

- links: the same daemon with the summary service and the broker behind an emulated mobile link
  (`support.linkemu`) at each RTT, with the kept-warm summary connection and with
  connection-per-lookup (the peer, summary.keepalive_s = 0): tap → flags on the OLED, card present →
  flags, the lookup, and publish → PUBACK (the daemon's overhead: sealing, outbox and audit fsyncs, then
  the publish's round trip to the broker).

Our package is byte-compiled first, as pip does when it installs the firmware on the Pi.

Env: BENCH_READS (100), BENCH_IDLE_S (60), BENCH_LOG_LEVEL (info), BENCH_LINK_TAPS (10 per RTT and
client), BENCH_RTTS_MS (30,100,300; empty: no link figures).
"""

from __future__ import annotations

import compileall
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import mynabox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package

from bench_imports import floor, settle_page_cache, unit_environment
from pagecache import large_folio_mb, mapped_files

from mynabox.app.readtiming import parse
from support.linkemu import LinkEmulator
from support.notify import NotifySocket

if TYPE_CHECKING:  # the test kit (cryptography, Pillow, ...) is imported once the page cache is settled
    from mynabox_testkit.stack import BoxStack

READS = int(os.environ.get("BENCH_READS", "100"))
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "60"))
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "info")  # the daemon's; printed whole when a tap shows nothing
LINK_TAPS = int(os.environ.get("BENCH_LINK_TAPS", "10"))
RTTS_MS = [int(v) for v in os.environ.get("BENCH_RTTS_MS", "30,100,300").split(",") if v]
MYNABOX = str(Path(".venv/bin/mynabox").resolve())
TICKS = os.sysconf("SC_CLK_TCK")
# The daemon's mock pins keep their current state only, as the box's do (boxpins/sitecustomize.py).
BOX_PINS = str(Path(__file__).resolve().parent / "boxpins")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mb(pid: int) -> dict[str, float]:
    wanted = {"VmRSS": "rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb"}
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[wanted[key]] = round(int(value.split()[0]) / 1024, 1)
    return figures


def mappings_mb(pid: int, top: int = 12) -> list[tuple[str, float, float]]:
    """The largest resident mappings (path or kind, RSS MB, of which anonymous MB) from /proc/PID/smaps."""
    sizes: dict[str, list[int]] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head[0].endswith(":"):  # a mapping's header line: address perms offset dev inode [path]
            name = head[5] if len(head) > 5 else "[anonymous]"
            name = name.rsplit("/", 1)[-1] if name.startswith("/") else name
        elif head[0] in ("Rss:", "Anonymous:"):
            sizes.setdefault(name, [0, 0])[head[0] == "Anonymous:"] += int(head[1])
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1][0])[:top]
    return [(n, round(r / 1024, 1), round(a / 1024, 1)) for n, (r, a) in ranked]


class TimingLines:
    """Reads the daemon's stderr; keeps each read-timing line with the moment it arrived here."""

    def __init__(self, stream: object) -> None:
        self.lines: list[tuple[float, str, dict[str, float]]] = []
        self.log: list[str] = []  # every line, for explaining a tap that showed no result
        self._stream = stream
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for raw in self._stream:  # type: ignore[attr-defined]
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            parsed = parse(line)
            if parsed is not None:
                self.lines.append((time.perf_counter(), *parsed))

    def of(self, milestone: str) -> list[tuple[float, dict[str, float]]]:
        return [(t, f) for t, m, f in self.lines if m == milestone]


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else float("nan")


def tap(stack: BoxStack, timings: TimingLines, card_id: str) -> list[float]:
    """One tap of a virtual card: [tap → result on the OLED, ms], or [] when no result came within 20 s."""
    from mynabox_testkit.mynacard import VirtualMyNumberCard
    from mynabox_testkit.vpcd import VpcdCardServer

    assert stack.pcscd is not None
    stack.pcscd.wait_empty()
    want = len(timings.of("result-shown")) + 1
    tapped = time.perf_counter()
    server = VpcdCardServer(VirtualMyNumberCard(card_id), port=stack.pcscd.vpcd_port).start()
    try:
        deadline = time.monotonic() + 20
        while len(timings.of("result-shown")) < want and time.monotonic() < deadline:
            time.sleep(0.001)
        shown = timings.of("result-shown")
        return [(shown[-1][0] - tapped) * 1000] if len(shown) >= want else []
    finally:
        server.remove()


def taps_over_link(stack: BoxStack, rtt_ms: int, *, warm: bool) -> dict[str, float]:
    """LINK_TAPS taps with both links behind an emulated link of `rtt_ms`; p50 figures in ms."""
    from mynabox_testkit.patients import PATIENTS

    assert stack.refsvc is not None and stack.broker is not None and stack.pcscd is not None
    rtt = rtt_ms / 1000
    service = LinkEmulator(("127.0.0.1", stack.refsvc.port), rtt_s=rtt)
    broker = LinkEmulator(("127.0.0.1", stack.broker.port), rtt_s=rtt)
    stack.config_extra = {
        "summary": {"url": f"https://127.0.0.1:{service.port}", "keepalive_s": 50.0 if warm else 0.0},
        "mqtt": {"port": broker.port},
    }
    stack.write_config()
    notify = NotifySocket(stack.dir / f"notify-{rtt_ms}-{int(warm)}.sock")
    env = dict(os.environ, **stack.env(), **unit_environment(), NOTIFY_SOCKET=str(notify.path))
    daemon = subprocess.Popen(
        [MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=subprocess.PIPE
    )
    timings = TimingLines(daemon.stderr)
    registered = [p for p in PATIENTS if p.key != "not-registered"]
    tap_to_result: list[float] = []
    try:
        started = time.monotonic()
        while notify.first("READY=1", since=started) is None and time.monotonic() - started < 30:
            time.sleep(0.005)
        time.sleep(1 + 4 * rtt)  # the broker link and the summary connection come up
        for i in range(LINK_TAPS):
            tap_to_result.extend(tap(stack, timings, registered[i % len(registered)].card_id))
            time.sleep(0.5)  # the result screen clears (result_clear_s) before the next patient
        deadline = time.monotonic() + 10
        while len(timings.of("delivered")) < LINK_TAPS and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        notify.close()
        service.stop()
        broker.stop()
    shown_f = [f for _, f in timings.of("result-shown")]
    delivered = [f for _, f in timings.of("delivered")]
    return {
        "tap_to_oled_flags_ms_p50": p50(tap_to_result),
        "present_to_oled_flags_ms_p50": p50([f["present_to_result_ms"] for f in shown_f]),
        "lookup_ms_p50": p50([f["lookup_ms"] for f in delivered]),
        "publish_to_puback_ms_p50": p50([f["overhead_ms"] for f in delivered]),
        "taps": LINK_TAPS,
        "shown": len(shown_f),
        "delivered": len(delivered),
    }


def links() -> dict[str, dict[str, dict[str, float]]]:
    from mynabox_testkit.stack import BoxStack

    figures: dict[str, dict[str, dict[str, float]]] = {}
    if not RTTS_MS:
        return figures
    with BoxStack(
        device_id="amb-bench-link", consent_default="oral", result_clear_s=1, log_level=LOG_LEVEL
    ) as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        receiver = stack.gateway_receiver(lambda _opened: None)  # else every PUBACK is 0x10
        receiver.start()
        assert receiver.subscribed.wait(10), "the gateway receiver did not subscribe"
        try:
            for rtt_ms in RTTS_MS:
                figures[str(rtt_ms)] = {
                    "warm": taps_over_link(stack, rtt_ms, warm=True),
                    "peer": taps_over_link(stack, rtt_ms, warm=False),
                }
        finally:
            receiver.stop()
    print(f"over an emulated link (both links), {LINK_TAPS} taps per RTT and client, p50 ms: warm / peer")
    print("RTT ms | tap → flags on OLED | card present → flags | lookup | publish → PUBACK (overhead)")
    for rtt_ms, both in figures.items():
        w, p = both["warm"], both["peer"]
        print(
            f"{rtt_ms:>6} | {w['tap_to_oled_flags_ms_p50']} / {p['tap_to_oled_flags_ms_p50']} "
            f"| {w['present_to_oled_flags_ms_p50']} / {p['present_to_oled_flags_ms_p50']} "
            f"| {w['lookup_ms_p50']} / {p['lookup_ms_p50']} "
            f"| {w['publish_to_puback_ms_p50']} / {p['publish_to_puback_ms_p50']}"
        )
    return figures


def as_on_the_box(stack: BoxStack) -> None:
    """The stack's config without the dummy display's PNG frames: the box's OLED writes no files (saving a
    PNG per frame loads Pillow's PNG plugin and zlib, ≈ 0.5 MB the box never holds)."""
    stack.write_config()
    lines = stack.config_path.read_text(encoding="utf-8").splitlines()
    stack.config_path.write_text("\n".join(li for li in lines if not li.startswith("frames_dir =")) + "\n")


def main() -> int:
    compileall.compile_dir(Path(mynabox.__file__).parent, quiet=1)
    before = floor()  # first: nothing of the test kit is mapped yet, so every page cache page can go
    from mynabox_testkit.patients import PATIENTS
    from mynabox_testkit.stack import BoxStack

    with BoxStack(
        device_id="amb-bench", consent_default="oral", result_clear_s=1, log_level=LOG_LEVEL
    ) as stack:
        assert stack.pcscd is not None
        as_on_the_box(stack)
        stack.pcscd.use_in_process()
        # A subscriber, as at a real gateway: without one every PUBACK is 0x10 and the box keeps the record.
        receiver = stack.gateway_receiver(lambda _opened: None)
        receiver.start()
        assert receiver.subscribed.wait(10), "the gateway receiver did not subscribe"
        notify = NotifySocket(stack.dir / "notify.sock")
        env = dict(os.environ, **stack.env(), **unit_environment(), NOTIFY_SOCKET=str(notify.path))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [BOX_PINS, env.get("PYTHONPATH")]))
        settle_page_cache()
        started = time.monotonic()
        daemon = subprocess.Popen(
            [MYNABOX, "run", "--config", str(stack.config_path)], env=env, stderr=subprocess.PIPE
        )
        timings = TimingLines(daemon.stderr)
        registered = [p for p in PATIENTS if p.key != "not-registered"]
        tap_to_result: list[float] = []
        try:
            while (ready_at := notify.first("READY=1", since=started)) is None:
                time.sleep(0.001)
            start_to_ready_ms = (ready_at - started) * 1000
            time.sleep(1)  # let the start-up connections settle
            at_ready = memory_mb(daemon.pid)["rss_mb"]
            for i in range(READS):
                tap_to_result.extend(tap(stack, timings, registered[i % len(registered)].card_id))
            deadline = time.monotonic() + 10
            while len(timings.of("delivered")) < READS and time.monotonic() < deadline:
                time.sleep(0.01)
            memory = memory_mb(daemon.pid)
            largest = mappings_mb(daemon.pid)
            large_folio, daemon_files = large_folio_mb(daemon.pid), frozenset(mapped_files(daemon.pid))
            cpu0 = cpu_seconds(daemon.pid)
            time.sleep(IDLE_S)
            idle_cpu = (cpu_seconds(daemon.pid) - cpu0) / IDLE_S * 100
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            notify.close()
            receiver.stop()
    after = floor(daemon_files)  # the same libraries, the same page cache state, now that the daemon is gone
    base = before["floor_mb"]
    assert base is not None and before["floor_anon_mb"] is not None and before["floor_file_mb"] is not None
    shown_f = [f for _, f in timings.of("result-shown")]
    delivered = [f for _, f in timings.of("delivered")]
    figures = {
        "start_to_ready_ms": round(start_to_ready_ms, 1),
        "rss_at_ready_mb": at_ready,
        **memory,
        **before,
        "floor_after_mb": after["floor_mb"],
        "large_folio_mb": large_folio,
        "ours_over_floor_mb": round(memory["rss_mb"] - base, 1),
        "ours_anon_over_floor_mb": round(memory["rss_anon_mb"] - before["floor_anon_mb"], 1),
        "ours_file_over_floor_mb": round(memory["rss_file_mb"] - before["floor_file_mb"], 1),
        "ours_over_floor_at_ready_mb": round(at_ready - base, 1),
        "idle_cpu_percent": round(idle_cpu, 3),
        "tap_to_oled_result_ms_p50": p50(tap_to_result),
        "present_to_oled_result_ms_p50": p50([f["present_to_result_ms"] for f in shown_f]),
        "present_to_puback_ms_p50": p50([f["present_to_puback_ms"] for f in delivered]),
        "card_ms_p50": p50([f["card_ms"] for f in delivered]),
        "lookup_ms_p50": p50([f["lookup_ms"] for f in delivered]),
        "overhead_ms_p50": p50([f["overhead_ms"] for f in delivered]),
        "overhead_ms_max": round(max((f["overhead_ms"] for f in delivered), default=float("nan")), 1),
        "reads": READS,
        "results_shown": len(shown_f),
        "delivered": len(delivered),
        "idle_s": IDLE_S,
    }
    print(f"{READS} taps: daemon subprocess, pcscd + vpcd, reference service, mosquitto (TLS)")
    print(f"start → READY {figures['start_to_ready_ms']} ms (goal ≤ 1000)")
    print(
        f"tap → result on the OLED p50 {figures['tap_to_oled_result_ms_p50']} ms "
        f"(card present → result {figures['present_to_oled_result_ms_p50']} ms)"
    )
    print(
        f"card present → PUBACK p50 {figures['present_to_puback_ms_p50']} ms = card "
        f"{figures['card_ms_p50']} + lookup {figures['lookup_ms_p50']} + overhead "
        f"{figures['overhead_ms_p50']} ms (goal ≤ 20)"
    )
    print(
        f"RSS after {READS} reads {figures['rss_mb']} MB (anonymous {figures.get('rss_anon_mb')}, "
        f"file-backed {figures.get('rss_file_mb')}; at READY {at_ready}; goal ≤ 35)"
    )
    print(
        f"ours over the floor after {READS} reads: {figures['ours_over_floor_mb']} MB (aim ≤ 10; "
        f"at READY {figures['ours_over_floor_at_ready_mb']}; floor {base} MB: the interpreter and the "
        "prescribed libraries)"
    )
    print(
        f"  of which anonymous {figures['ours_anon_over_floor_mb']}, file-backed "
        f"{figures['ours_file_over_floor_mb']} (floor {before['floor_anon_mb']} + {before['floor_file_mb']}; "
        f"{after['floor_mb']} MB again after the daemon; page cache settled before each, file-backed MB in "
        f"large folios: daemon {large_folio}, floor {before['floor_large_folio_mb']}, 0 as on the box)"
    )
    biggest = ", ".join(f"{n} {r} ({a})" for n, r, a in largest)
    print(f"largest mappings, RSS MB (of which anonymous): {biggest}")
    print("  (the daemon's mock pins kept their current state only, as the box's pins do: boxpins/)")
    print(f"idle CPU over {IDLE_S:g} s: {figures['idle_cpu_percent']} % (goal ≤ 0.2)")
    if len(shown_f) < READS:  # a tap that showed no result: the daemon's own account (no personal data in it)
        print(f"{READS - len(shown_f)} taps showed no result; the daemon's log:")
        for line in timings.log:
            print("  " + line)
    figures["links"] = links()  # type: ignore[assignment]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
