"""`make image-cut-test CUTS=N`: power cuts (qemu killed) at random points of a field update on the emulated
box, each followed by a power-on that must come up on a working version with the outbox and the audit chain
intact. The box, its keyring, the health check's limit and the good bundle are the update test's
(update-test.py); the cuts' points are drawn from a seeded random generator (printed, `--seed` repeats them):
  - install: 0–150 s after `mynabox update install URL` started (the fetch into the state partition, RAUC's
    checks, its write of the other slot, or just after: all are cut somewhere);
  - switch: 0–3 s after RAUC said "Marking target slot … as bootable" (RAUC's status and our backend's
    boot-state write that makes the other slot primary);
  - first-boot: 0–60 s after boot.scr's line for the new slot's first boot (U-Boot, kernel, systemd, the
    daemon's start, the health check).
After each power-on: boot.scr's line (the copy it read, damage), the slot booted, READY, the health check's
verdict on that slot, `mynabox audit verify` (the keyed chain), SQLite's integrity check of the outbox, and
`mynabox update status`. A run is clean when the box came up READY on a slot that passed its health check,
the chain verifies with no fewer entries than before the cut, and the outbox is intact. A slot booted whose
boot state was damaged must say so (boot.scr's line and the daemon's journal: see damage-test.py).
Run as root with the project's venv:
  .venv/bin/python image-build/cut-test.py [--cuts N] [--seed S] [--out DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from vmbox import READY, Box, boot_test, diagnose, launch  # noqa: E402

from mynabox_testkit.mynacard import VirtualMyNumberCard  # noqa: E402
from mynabox_testkit.patients import patient  # noqa: E402
from support.vscard import VscardCard  # noqa: E402

PHASES = ("install", "switch", "first-boot")
BOOTABLE = "as bootable..."
STATE_LINE = re.compile(r"mynabox: boot state copy (\S+) \((\S+)\), seq (\S+)")
AUDIT = (
    "/opt/mynabox/venv/bin/mynabox audit verify --path /var/lib/mynabox/audit.jsonl"
    " --key /etc/mynabox/credentials/audit-key"
)
OUTBOX = (
    "/opt/mynabox/venv/bin/python -c \"import sqlite3; print('outbox', sqlite3.connect("
    "'file:/var/lib/mynabox/outbox.db?mode=ro', uri=True).execute('pragma integrity_check').fetchone()[0])\""
)


def update_test() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_test", HERE / "update-test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def audit_entries(box: Box) -> int | None:
    found = re.findall(r"^OK (\d+) entries", box.sh(AUDIT, timeout=300), re.M)
    return int(found[-1]) if found else None


def cut(
    box: Box, ut: ModuleType, url: str, n: int, *, phase: str, rng: random.Random, step: float
) -> tuple[float, int]:
    """Starts an install and cuts the power at a random point of `phase`: the seconds after the phase's
    mark, and the console's offset at the power-on."""
    console = box.console
    since = ut.start_install(box, url, n)
    if phase == "install":
        mark, delay = time.monotonic(), rng.uniform(0, 150)
    elif phase == "switch":
        console.wait(BOOTABLE, step, since)
        mark, delay = time.monotonic(), rng.uniform(0, 3)
    else:
        console.wait("mynabox: booting slot ", step + 600, since)
        mark, delay = time.monotonic(), rng.uniform(0, 60)
    time.sleep(max(0.0, mark + delay - time.monotonic()))
    return round(delay, 1), console.power_cut()


def after_cut(box: Box, ut: ModuleType, since: int, step: float, entries: int | None) -> dict[str, object]:
    console = box.console
    row: dict[str, object] = {}
    t0 = time.monotonic()
    # The first boot after the cut may itself fail its health check and roll back: follow it to READY on a
    # slot the check calls healthy.
    healthy = console.wait("is healthy: marked good", 2 * step, since)
    row["slots"] = " ".join(console.slots(since))
    boot_scr = [f"{m[0]} ({m[1]})" for m in STATE_LINE.findall(console.text(since))]
    row["boot_scr"] = boot_scr
    if healthy is None:
        diagnose(console)
        row["ok"] = False
        return row
    found = re.findall(r"health: slot ([AB]) is healthy", console.text(since))
    row["healthy_slot"] = found[-1] if found else None
    row["ready_to_healthy_s"] = round(time.monotonic() - t0, 1)
    row["damage_said"] = "boot.scr found the boot state damaged" in console.text(since)
    after = audit_entries(box)
    outbox = box.sh(OUTBOX, timeout=300)
    row["audit_entries"] = f"{entries} -> {after}"
    row["outbox"] = "ok" if re.search(r"^outbox ok$", outbox, re.M) else "FAILED"
    damaged = [s for s in boot_scr if "(ok)" not in s]
    row["ok"] = bool(
        READY in console.text(since)
        and after is not None
        and (entries is None or after >= entries)
        and row["outbox"] == "ok"
        and (not damaged or row["damage_said"])
    )
    return row


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
    signer, options = ut.update_box(
        work,
        out=args.out,
        timeout=args.timeout,
        step_timeout=args.step_timeout,
        health_limit_min=args.health_limit_min,
    )
    served = work / "served"
    figures: dict[str, object] = {}
    rows: list[dict[str, object]] = []
    t_start = time.monotonic()
    with launch(
        options, on_card=lambda image: ut.make_bundles(image, work, signer, served, figures, names=("good",))
    ) as box:
        console = box.console
        v = box.work / "vehicle" / "summary"
        with ut.update_server(served, v / "server.pem", v / "server.key", v / "ca.pem") as server:
            url = f"https://10.0.2.2:{server.server_address[1]}/good.raucb"
            if console.wait("is healthy: marked good", args.timeout) is None:
                print("cut-test: the first boot did not come up healthy")
                diagnose(console)
                return 1
            # The update test's config (idle switch after 0.5 min, test mode for the tap), then one tap so
            # the audit chain and the outbox hold a read before the cuts.
            since = console.mark()
            box.sh(
                f"sed -i -e 's/^\\[device\\]$/[device]\\ntest_mode = true/' {ut.IDENTITY}/config.toml"
                f" && printf '\\n[update]\\nidle_min = 0.5\\n{bt.READER}' >> {ut.IDENTITY}/config.toml"
                " && systemctl restart mynabox.service"
            )
            console.wait(READY, args.step_timeout, since)
            reader = VscardCard(VirtualMyNumberCard(patient("healthy").card_id), port=box.ccid_port).connect()
            try:
                print("cut-test: a tap before the cuts:", json.dumps(ut.tap(box, bt, reader, "healthy")))
            finally:
                reader.close()
            entries = audit_entries(box)
            print(f"cut-test: audit chain before the cuts: {entries} entries", flush=True)
            for n in range(1, args.cuts + 1):
                phase = rng.choice(PHASES)
                t_cut = time.monotonic()
                delay, since = cut(box, ut, url, n, phase=phase, rng=rng, step=args.step_timeout)
                row: dict[str, object] = {"cut": n, "phase": phase, "at_s": delay}
                row.update(after_cut(box, ut, since, args.step_timeout, entries))
                row["cycle_s"] = round(time.monotonic() - t_cut, 1)
                print("cut-test:", json.dumps(row), flush=True)
                rows.append(row)
                if not row["ok"]:
                    break
                entries = audit_entries(box)
    clean = sum(1 for r in rows if r["ok"])
    total = round(time.monotonic() - t_start, 1)
    print(json.dumps({**box.figures, **figures, "cuts_run": len(rows), "clean": clean, "total_s": total}))
    print(f"cut-test: {clean} of {len(rows)} cuts came back clean in {total} s (seed {args.seed})")
    ok = bool(rows) and clean == len(rows) == args.cuts
    if args.keep is None and ok:
        shutil.rmtree(work)
    return 0 if ok else 1


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
