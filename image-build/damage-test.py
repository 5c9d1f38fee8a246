"""`make image-damage-test`: the emulated box (image-build/vmbox.py, as the boot test launches it) powered
on with its A/B boot state damaged on the card, the way a power cut during a write can leave it.

The box boots once as built (slot A, READY). Then, for each case, power is cut (qemu killed), the boot-state
copies on the card's FAT partition are damaged with mtools while it is off, and power comes back:
  - truncated: the newest copy (the one boot.scr would read) cut to 100 bytes;
  - zeroed: the newest copy overwritten with 512 zero bytes;
  - both: copy 0 truncated and copy 1 zeroed (no valid copy: RAUC's default order, A B).
Each case must boot a working slot (boot.scr's line, READY) and the box must say what it found: boot.scr's
own line, the daemon's warning in the journal, `mynabox update status` ("boot state at boot: …") and
`boot_state` on its retained state topic. What each case booted and reported is printed, with its time.
Run as root with the project's venv:
  .venv/bin/python image-build/damage-test.py [--out DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from vmbox import READY, Box, Options, boot_test, diagnose, exit_code, fat_get, fat_put, launch  # noqa: E402

from mynabox.update import bootstate as bs  # noqa: E402

MYNABOX = "/opt/mynabox/venv/bin/mynabox"
NAMES = ("bootstate.0", "bootstate.1")
STATE_LINE = re.compile(r"mynabox: boot state copy (\S+) \((\S+)\), seq (\S+)")
SAID = "boot.scr found the boot state damaged at this boot"
TRUNCATED = b"\x00" * 100
ZEROED = b"\x00" * bs.SIZE


def newest(image: Path) -> int:
    """The copy boot.scr would read now (the newest valid one)."""
    reading = bs.read(fat_get(image, NAMES[0]), fat_get(image, NAMES[1]))
    if reading.source is None:
        raise SystemExit("damage-test: no valid boot-state copy before the damage")
    return reading.source


def damage(box: Box, case: str) -> Callable[[], str]:
    """What to do to the card while it is off for `case`; returns the damage boot.scr must report."""

    def edit() -> str:
        if case == "both":
            fat_put(box.image, NAMES[0], TRUNCATED, box.work)
            fat_put(box.image, NAMES[1], ZEROED, box.work)
            return bs.Damage.BOTH_BAD.value
        copy = newest(box.image)
        fat_put(box.image, NAMES[copy], TRUNCATED if case == "truncated" else ZEROED, box.work)
        return f"copy{copy}-bad"

    return edit


def run_case(box: Box, bt: ModuleType, case: str, step: float) -> dict[str, object]:
    console = box.console
    box.sh("sync")
    expected: list[str] = []
    t0 = time.monotonic()
    since = console.power_cut(lambda: expected.append(damage(box, case)()))
    row: dict[str, object] = {"case": case, "expected": expected[0]}
    slot_at = console.wait("mynabox: booting slot ", step, since)
    found = STATE_LINE.search(console.text(since))
    row["boot_scr"] = f"copy {found.group(1)} ({found.group(2)}), seq {found.group(3)}" if found else None
    slots = console.slots(since)
    row["slot"] = slots[0] if slots else None
    ready = None if slot_at is None else console.wait(READY, step, slot_at)
    row["ready_s"] = None if ready is None else round(time.monotonic() - t0, 1)
    if ready is None:
        diagnose(console)
        return row
    journal = box.sh(f"journalctl -b --no-pager -o cat -u mynabox.service | grep -F '{SAID}' | tail -n 1")
    said = [ln.strip() for ln in journal.splitlines() if SAID in ln and "WARNING" in ln and "grep" not in ln]
    row["journal"] = said[-1] if said else None
    status = box.sh(f"{MYNABOX} update status 2>&1 | grep -E '^(booted slot|boot state)'")
    row["update_status"] = " | ".join(
        ln.strip() for ln in status.splitlines() if ln.startswith(("booted", "boot "))
    )
    state = bt.retained_state(box)
    row["retained_boot_state"] = None if state is None else state.get("boot_state")
    want = expected[0]
    row["ok"] = bool(
        found
        and found.group(2) == want
        and row["slot"] == "A"
        and row["journal"]
        and f"({want})" in str(row["journal"])
        and f"boot state at boot: {want}" in str(row["update_status"])
        and row["retained_boot_state"] == want
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--keep", type=Path, help="keep the work files (card, console log) here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the first boot to READY")
    parser.add_argument("--step-timeout", type=float, default=600.0, help="seconds for each damaged boot")
    parser.add_argument("--cases", default="truncated,zeroed,both")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.keep or Path(tempfile.mkdtemp(prefix="mynabox-damage-"))
    options = Options(out=args.out, keep=work, timeout=args.timeout, step_timeout=args.step_timeout)
    bt = boot_test()
    rows: list[dict[str, object]] = []
    t_start = time.monotonic()
    with launch(options) as box:
        if box.console.wait(READY, args.timeout) is None:
            print("damage-test: the first boot did not reach READY")
            diagnose(box.console)
            return 1
        box.figures["first_boot_ready_s"] = box.console.elapsed()
        for case in args.cases.split(","):
            row = run_case(box, bt, case, args.step_timeout)
            print("damage-test:", json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
        after = box.sh(f"{MYNABOX} update status 2>&1 | grep -E '^boot state now'")
        print("damage-test: at the end:", " ".join(after.split()))
    ok = bool(rows) and all(r["ok"] for r in rows)
    print(json.dumps({**box.figures, "total_s": round(time.monotonic() - t_start, 1), "cases": rows}))
    print(f"damage-test: {'every case booted slot A and was reported' if ok else 'FAILED'}")
    return exit_code(ok, work, args.keep)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
