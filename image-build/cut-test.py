"""`make image-cut-test CUTS=N`: power cuts (qemu killed) at random points of a field update on the emulated
box, each followed by a power-on that must come up on a working version with the outbox and the audit chain
intact. The box, its keyring, the health check's limit and the good bundle are the update test's
(update-test.py). The test copy's RAUC backend (/usr/lib/mynabox/rauc-bootloader-backend, in both slots)
is the image's with two console lines added around each boot-state write (its begin and end, with the
guest's uptime): nothing else of it changes. Each cut's point is three draws from a seeded generator
(printed; `--seed` repeats the points, not the box's timing):
  - install: a drawn fraction of the span the last whole install took (from `mynabox update install URL`
    to RAUC's "… succeeded"; 150 s before one was seen): RAUC streaming it or the fetch, RAUC's checks,
    its write of the other slot (with an adaptive install after the first, most of the span);
  - switch, after-mark: 0–3 s after RAUC said its install "succeeded" (`update install`'s check of the new
    slot, then `rauc status mark-active other`: RAUC leaves the slot non-bootable; our backend's start,
    its boot-state write, RAUC's status file, the install's end);
  - switch, in-backend: inside our backend's set-primary, the one write that makes the other slot primary:
    a drawn fraction of the span the last uncut set-primary took (before one was seen whole, the last
    boot-state write's: mark-good at boot), after its begin line;
  - first-boot: a drawn fraction of the span the last boot took from power-on to the health check's
    mark-good (240 s before one was seen), after boot.scr's line for the new slot's first boot (the kernel,
    systemd, the daemon's start, the health check and its mark-good write).
Each cut says where it landed (the update's last milestone on the console before the cut, the backend's
lines seen). While the power is off the card's two boot-state copies are read (mtools) with the reader's
rules (mynabox.update.bootstate, the same as boot.scr's): the slot the card names and the damage it holds.
After the power-on, the verdict (`verdict()`, tested on the host in tests/image_build/test_cut_test.py):
boot.scr booted the slot the card named and read the damage the card held, a damaged state is said by the
daemon's journal, READY and a slot marked good by the health check, `mynabox audit verify` passes with no
fewer entries than before the cut, and SQLite's integrity check of the outbox is ok. A failed cut is
recorded and diagnosed; if the box did not come up healthy it is power-cycled once more and the run goes
on when it does. Exit 1 if any cut failed. A table per phase and sub-window closes the output.
Run as root with the project's venv:
  .venv/bin/python image-build/cut-test.py [--cuts N] [--seed S] [--out DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from vmbox import READY, SLOT_LINE, Box, boot_test, diagnose, exit_code, fat_get, launch, script  # noqa: E402

from mynabox.update import bootstate as bs  # noqa: E402
from mynabox_testkit.mynacard import VirtualMyNumberCard  # noqa: E402
from mynabox_testkit.patients import patient  # noqa: E402
from support.vscard import VscardCard  # noqa: E402

PHASES = ("install", "switch", "first-boot")
# The switch's two sub-windows: 0–3 s after RAUC's "… succeeded" (update install's check of the new slot,
# its mark-active, our backend's start, its write, RAUC's
# status file, the install's end), or inside our backend's own run (its begin and end lines, below): a
# fraction of the span the last uncut set-primary took, from its begin line.
SWITCH_WINDOWS = ("after-mark", "in-backend")
BACKEND_SPAN_S = 2.0  # until one set-primary has been seen whole
INSTALL_SPAN_S = 150.0  # until one install has been seen whole
BOOT_SPAN_S = 240.0  # until one boot to marked good has been seen
# RAUC's install has ended (system.conf activate-installed=false: `update install` makes the slot primary).
BOOTABLE = "` succeeded"
STATE_LINE = re.compile(r"mynabox: boot state copy (\S+) \((\S+)\), seq (\S+)")
BACKEND_LINE = re.compile(r"mynabox-cut: backend (set-\S+) (\S+) (begin|end rc=\d+) ([\d.]+)")
DAMAGE_SAID = "boot.scr found the boot state damaged"
HEALTHY = re.compile(r"health: slot ([AB]) is healthy")
# What the box had got to when the power went, in the order an update goes through (console strings; the
# instrumented backend's begin and end lines count too, as "set-primary begun" etc.).
MILESTONES = tuple(
    (label, re.compile(pattern))
    for label, pattern in (
        ("slot-write", r"writing data to device|Updating /dev/\S+ with "),  # plain | adaptive
        ("slot-written", r"Updating slot rootfs\."),
        ("install-succeeded", re.escape(BOOTABLE)),
        # Not the shell's echo of the typed command ("@@install-end-$((n+0))"): the line it prints.
        ("install-ended", r"@@install-end-\d+ rc="),
        ("rebooting", r"reboot: Restarting system"),
        ("new-slot-booting", r"mynabox: booting slot "),
        ("ready", re.escape(READY)),
        ("marked-good", r"is healthy: marked good"),
    )
)
AUDIT = (
    "/opt/mynabox/venv/bin/mynabox audit verify --path /var/lib/mynabox/audit.jsonl"
    " --key /etc/mynabox/credentials/audit-key"
)
OUTBOX = (
    "/opt/mynabox/venv/bin/python -c \"import sqlite3; print('outbox', sqlite3.connect("
    "'file:/var/lib/mynabox/outbox.db?mode=ro', uri=True).execute('pragma integrity_check').fetchone()[0])\""
)
BACKEND = "/usr/lib/mynabox/rauc-bootloader-backend"


@dataclass(frozen=True)
class Point:
    """Where a cut goes: its phase, the sub-window and a number drawn in it (after-mark: seconds after
    RAUC's "succeeded"; otherwise a fraction of the span the window's last whole run took)."""

    phase: str
    window: str
    value: float


def draw(rng: random.Random) -> Point:
    """The next cut's point: always three draws from `rng` (so a seed repeats the same points whatever the
    phases)."""
    phase = rng.choice(PHASES)
    sub = rng.choice(SWITCH_WINDOWS)
    u = rng.random()
    if phase == "install":
        return Point(phase, "of the install's span", round(u, 3))
    if phase == "first-boot":
        return Point(phase, "of a boot's span", round(u, 3))
    if sub == "after-mark":
        return Point(phase, sub, round(u * 3, 3))
    return Point(phase, sub, round(u, 3))


@dataclass
class Spans:
    """How long the last whole install (host seconds from its start to RAUC's "succeeded") and the last
    boot (power-on to marked good) took in this run: the install and first-boot cuts are drawn in them."""

    install_s: float = INSTALL_SPAN_S
    boot_s: float = BOOT_SPAN_S


@dataclass(frozen=True)
class Expected:
    """What the card said while the power was off: the slot boot.scr must load and the damage it must
    report (the same rules as boot.scr: mynabox.update.bootstate)."""

    slot: str | None
    damage: str
    state: str


def expected_boot(copy0: bytes | None, copy1: bytes | None) -> Expected:
    reading = bs.read(copy0, copy1)
    slot, _ = bs.boot(reading.state)
    if slot is None:  # no tries left: boot.scr gives every slot its tries again and resets
        slot, _ = bs.boot(replace(reading.state, a_left=bs.TRIES, b_left=bs.TRIES))
    st = reading.state
    return Expected(
        slot,
        reading.damage.value,
        f"order {' '.join(st.order) or '-'}, A {st.a_left} B {st.b_left}, seq {st.seq},"
        f" copy {reading.source} ({reading.damage.value})",
    )


def backend_spans(text: str, action: str | None = "set-primary") -> list[float]:
    """Seconds (guest uptime) each whole run of the instrumented backend took (`action`'s, or any write's
    for None), in order."""
    spans, begun = [], None
    for done, _slot, what, uptime in BACKEND_LINE.findall(text):
        if action is not None and done != action:
            continue
        if what == "begin":
            begun = float(uptime)
        elif begun is not None:
            spans.append(round(float(uptime) - begun, 3))
            begun = None
    return spans


def landed(text: str) -> str:
    """The last milestone of the update the console shows before the cut (`text`: from the install's
    start to the power cut); "install-started" when none."""
    events = [
        (max((m.start() for m in pattern.finditer(text)), default=-1), label) for label, pattern in MILESTONES
    ]
    for m in BACKEND_LINE.finditer(text):
        events.append((m.start(), f"{m.group(1)} {'begun' if m.group(3) == 'begin' else 'ended'}"))
    at, label = max(events, default=(-1, ""))
    return label if at >= 0 else "install-started"


def verdict(
    text: str, expected: Expected, entries_before: int | None, entries_after: int | None, outbox: str
) -> tuple[bool, list[str]]:
    """A cut's verdict from the console after the power-on (`text`), what the card held while off, the audit
    chain's entries before and after and the outbox's integrity check. Clean: boot.scr booted the slot the
    card named with the damage it held, a damaged state is said by the daemon, READY on a slot its health
    check marked good, no audit entry lost, the outbox intact. Returns (clean, what was wrong)."""
    wrong: list[str] = []
    slots = SLOT_LINE.findall(text)
    states = STATE_LINE.findall(text)
    if not slots:
        wrong.append("boot.scr booted no slot")
    elif slots[0] != expected.slot:
        wrong.append(f"booted slot {slots[0]}, the card named {expected.slot}")
    if not states:
        wrong.append("no boot.scr state line")
    elif states[0][1] != expected.damage:
        wrong.append(f"boot.scr read {states[0][1]}, the card held {expected.damage}")
    damaged = expected.damage != "ok" or any(s[1] != "ok" for s in states)
    if damaged and DAMAGE_SAID not in text:
        wrong.append("damaged boot state not said by the daemon")
    if READY not in text:
        wrong.append("no READY")
    if not HEALTHY.search(text):
        wrong.append("no slot marked good by the health check")
    if entries_after is None:
        wrong.append("audit chain does not verify")
    elif entries_before is not None and entries_after < entries_before:
        wrong.append(f"audit entries {entries_before} -> {entries_after}")
    if not re.search(r"^outbox ok$", outbox, re.M):
        wrong.append("outbox integrity check failed")
    return not wrong, wrong


def update_test() -> ModuleType:
    return script("update-test")


def instrumented_backend(source: Path, dest: Path) -> Path:
    """The image's RAUC backend with a console line (guest uptime) before and after each boot-state write:
    the test copy's only change to it, so a cut can be put inside the write and said where it landed."""
    text = source.read_text()
    say = 'read -r up _ < /proc/uptime; echo "mynabox-cut: backend $1 ${2:-} %s $up" > /dev/ttyAMA0'
    begin = '    backend "$@"\n    rc=$?\n'
    if text.count(begin) != 1:
        raise SystemExit(f"cut-test: {source} changed: no single set-* call to instrument")
    text = text.replace(
        begin, f'    {say % "begin"}\n    backend "$@"\n    rc=$?\n    {say % "end rc=$rc"}\n'
    )
    dest.write_text(text)
    dest.chmod(0o755)
    return dest


def audit_entries(box: Box) -> int | None:
    found = re.findall(r"^OK (\d+) entries", box.sh(AUDIT, timeout=300), re.M)
    return int(found[-1]) if found else None


def card_state(image: Path) -> Expected:
    """What the card's FAT holds now (the power is off): the slot boot.scr must boot, the damage."""
    return expected_boot(fat_get(image, "bootstate.0"), fat_get(image, "bootstate.1"))


def cut(
    box: Box, ut: ModuleType, url: str, n: int, *, point: Point, step: float, spans: Spans
) -> tuple[dict[str, object], int, Expected]:
    """Starts an install and cuts the power at `point`. Returns what the cut hit, the console's offset at
    the power-on and what the card held while off."""
    console = box.console
    since = ut.start_install(box, url, n)
    started = time.monotonic()
    ended = (f"@@install-end-{n} rc=",)  # an install that ended before the mark: cut at once
    delay, span = point.value, None
    if point.phase == "install":
        mark, span = started, spans.install_s
        delay = round(point.value * span, 3)
    else:
        if console.wait(BOOTABLE, step, since, fail=ended) is not None:  # the install's whole span
            spans.install_s = round(time.monotonic() - started, 1)
        if point.phase == "first-boot":
            failed = tuple(f"@@install-end-{n} rc={i}" for i in range(1, 10))  # no switch will come
            console.wait("mynabox: booting slot ", step + 600, since, fail=failed)
            mark, span = time.monotonic(), spans.boot_s
            delay = round(point.value * span, 3)
        elif point.window == "after-mark":
            mark = time.monotonic()
        else:
            # The last set-primary's span; before one was seen whole, the last write's (mark-good at boot).
            spans_seen = backend_spans(console.text()) or backend_spans(console.text(), None)
            span = spans_seen[-1] if spans_seen else BACKEND_SPAN_S
            console.wait("mynabox-cut: backend set-primary", step, since, fail=ended)
            mark, delay = time.monotonic(), round(point.value * span, 3)
    time.sleep(max(0.0, mark + delay - time.monotonic()))
    hit: dict[str, object] = {"at_s": round(time.monotonic() - mark, 2)}
    if span is not None:
        hit["span_s"] = span
    held: list[Expected] = []
    text = console.text(since)
    on = console.power_cut(lambda: held.append(card_state(box.image)))
    hit["landed"] = landed(text)
    hit["backend_seen"] = " | ".join(" ".join(m[:3]) for m in BACKEND_LINE.findall(text))
    return hit, on, held[0]


def after_cut(
    box: Box, since: int, step: float, entries: int | None, expected: Expected
) -> dict[str, object]:
    console = box.console
    row: dict[str, object] = {"card": expected.state}
    t0 = time.monotonic()
    # The first boot after the cut may itself fail its health check and roll back: follow it to a slot
    # the check calls healthy.
    healthy = console.wait("is healthy: marked good", step, since)
    text = console.text(since)
    row["slots"] = " ".join(SLOT_LINE.findall(text))
    row["boot_scr"] = [f"{m[0]} ({m[1]}) seq {m[2]}" for m in STATE_LINE.findall(text)]
    if healthy is None:
        ok, wrong = verdict(text, expected, entries, None, "")
        row.update(ok=False, wrong=wrong)
        diagnose(console)
        return row
    found = HEALTHY.findall(text)
    row["healthy_slot"] = found[-1] if found else None
    row["to_healthy_s"] = round(time.monotonic() - t0, 1)
    after = audit_entries(box)
    outbox = box.sh(OUTBOX, timeout=300)
    row["audit_entries"] = f"{entries} -> {after}"
    row["outbox"] = "ok" if re.search(r"^outbox ok$", outbox, re.M) else "FAILED"
    ok, wrong = verdict(console.text(since), expected, entries, after, outbox)
    row.update(ok=ok, wrong=wrong)
    return row


def recover(box: Box, step: float) -> bool:
    """After a failed cut: one more power cycle; True when the box comes up marked good again."""
    since = box.console.power_cut()
    back = box.console.wait("is healthy: marked good", step, since) is not None
    print(f"cut-test: power cycled after the failed cut: {'healthy again' if back else 'not healthy'}")
    return back


def table(rows: list[dict[str, object]]) -> list[str]:
    """Per phase and sub-window: cuts, clean, mean cycle seconds; and where the cuts landed."""
    lines = []
    keys = sorted({(str(r["phase"]), str(r["window"])) for r in rows})
    for phase, window in keys:
        mine = [r for r in rows if (r["phase"], r["window"]) == (phase, window)]
        clean = sum(1 for r in mine if r["ok"])
        cycle = sum(float(str(r["cycle_s"])) for r in mine) / len(mine)
        where: dict[str, int] = {}
        for r in mine:
            where[str(r["landed"])] = where.get(str(r["landed"]), 0) + 1
        spots = ", ".join(f"{k} {v}" for k, v in where.items())
        lines.append(
            f"{phase} / {window}: {len(mine)} cuts, {clean} clean, {cycle:.0f} s a cycle; landed: {spots}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--keep", type=Path, help="keep the work files (card, bundle, console log) here")
    parser.add_argument("--cuts", type=int, default=30)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the first boot to READY")
    parser.add_argument("--step-timeout", type=float, default=900.0, help="seconds for each later step")
    parser.add_argument("--health-limit-min", type=float, default=3.0, help="mynabox-health's limit")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ut = update_test()
    bt = boot_test()
    rng = random.Random(args.seed)
    print(f"cut-test: seed {args.seed}, {args.cuts} cuts", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mynabox-cuts-"))
    work.mkdir(parents=True, exist_ok=True)
    backend = instrumented_backend(
        HERE / "rauc" / "rauc-bootloader-backend", work / "rauc-bootloader-backend"
    )
    signer, options = ut.update_box(
        work,
        out=args.out,
        timeout=args.timeout,
        step_timeout=args.step_timeout,
        health_limit_min=args.health_limit_min,
        replace=((backend, BACKEND),),
    )
    served = work / "served"
    figures: dict[str, object] = {}
    rows: list[dict[str, object]] = []
    spans = Spans()
    t_start = time.monotonic()
    with launch(
        options, on_card=lambda image: ut.make_bundles(image, work, signer, served, figures, names=("good",))
    ) as box:
        v = box.work / "vehicle" / "summary"
        with ut.update_server(served, v / "server.pem", v / "server.key", v / "ca.pem") as server:
            url = f"https://10.0.2.2:{server.server_address[1]}/good.raucb"
            # The update test's config (idle switch after 0.5 min, test mode for the tap), then one tap so
            # the audit chain and the outbox hold a read before the cuts.
            ready = ut.ready_for_updates(
                box, bt, "cut-test", timeout=args.timeout, step=args.step_timeout, figures=figures
            )
            if not ready:
                return 1
            reader = VscardCard(VirtualMyNumberCard(patient("healthy").card_id), port=box.ccid_port).connect()
            try:
                print("cut-test: a tap before the cuts:", json.dumps(ut.tap(box, bt, reader, "healthy")))
            finally:
                reader.close()
            entries = audit_entries(box)
            print(f"cut-test: audit chain before the cuts: {entries} entries", flush=True)
            for n in range(1, args.cuts + 1):
                point = draw(rng)
                t_cut = time.monotonic()
                hit, since, expected = cut(box, ut, url, n, point=point, step=args.step_timeout, spans=spans)
                row: dict[str, object] = {"cut": n, "phase": point.phase, "window": point.window}
                row["drawn"] = point.value
                row.update(hit)
                row.update(after_cut(box, since, args.step_timeout, entries, expected))
                if isinstance(boot_s := row.get("to_healthy_s"), float):
                    spans.boot_s = boot_s
                row["cycle_s"] = round(time.monotonic() - t_cut, 1)
                print("cut-test:", json.dumps(row), flush=True)
                rows.append(row)
                # A failed cut whose box came up healthy goes on as it is; one that did not is power-cycled.
                if not row["ok"] and "healthy_slot" not in row and not recover(box, args.step_timeout):
                    print(f"cut-test: the box did not come back after cut {n}: stopping", flush=True)
                    break
                entries = audit_entries(box)  # after a failed cut: the baseline is what is there now
    clean = sum(1 for r in rows if r["ok"])
    total = round(time.monotonic() - t_start, 1)
    print(json.dumps({**box.figures, **figures, "cuts_run": len(rows), "clean": clean, "total_s": total}))
    print(f"cut-test: {clean} of {len(rows)} cuts came back clean in {total} s (seed {args.seed})")
    for line in table(rows):
        print("cut-test:", line)
    ok = bool(rows) and clean == len(rows) == args.cuts
    return exit_code(ok, work, args.keep)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
