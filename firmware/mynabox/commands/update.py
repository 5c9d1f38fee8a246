"""`mynabox update`: the box's side of field updates.

- `bootloader-backend ACTION [SLOT [good|bad]]`: RAUC's `bootloader=custom` backend (system.conf's
  `[handlers] bootloader-custom-backend=`), on the two boot-state copies boot.scr reads (see
  mynabox.update.bootstate). RAUC runs `get-primary`, `set-primary SLOT`, `get-state SLOT`,
  `set-state SLOT good|bad` and, where it cannot tell from `rauc.slot=`, `get-current`; answers go to
  stdout, a failure exits 1 with its reason on stderr.
- `init-bootstate DIR`: both copies of a new card's state (slot A only), for the image build.
- `check-bundle FILE`: RAUC's signature check (`rauc info` with the box's system.conf) and ours: the whole
  payload against its signed hash tree, the box's compatible, no older version than the running firmware
  unless `--force-older`. `install` will run it first.
- `status`: the booted slot, what boot.scr found damaged, the slots' versions and state from
  `rauc status --output-format=json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_BOOT_DIR = Path("/boot/firmware")
BACKEND_ACTIONS = ("get-primary", "set-primary", "get-state", "set-state", "get-current")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="update_command", metavar="ACTION", required=True)
    backend = sub.add_parser("bootloader-backend", help="RAUC's custom bootloader backend")
    backend.add_argument("action", choices=BACKEND_ACTIONS)
    backend.add_argument("slot", nargs="?")
    backend.add_argument("value", nargs="?", choices=("good", "bad"))
    backend.add_argument("--dir", type=Path, default=DEFAULT_BOOT_DIR, help="where bootstate.0/1 are")
    backend.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"))
    init = sub.add_parser("init-bootstate", help="write a new card's boot state (both copies) into DIR")
    init.add_argument("dir", type=Path)
    check = sub.add_parser("check-bundle", help="would this bundle be installed? (signature, board, version)")
    check.add_argument("bundle", type=Path)
    check.add_argument("--conf", type=Path, default=Path("/etc/rauc/system.conf"))
    check.add_argument("--force-older", action="store_true", help="allow a downgrade (fleet ops only)")
    check.add_argument("--running", help="the running firmware's version (default: this firmware's)")
    status = sub.add_parser("status", help="booted slot, boot-state damage, the slots' versions")
    status.add_argument("--rauc-json", type=Path, help="read this instead of running rauc status")
    status.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"))
    status.add_argument("--dir", type=Path, default=DEFAULT_BOOT_DIR, help="where bootstate.0/1 are")


def run(args: argparse.Namespace) -> int:
    if args.update_command == "bootloader-backend":
        return _backend(args)
    if args.update_command == "init-bootstate":
        return _init(args.dir)
    if args.update_command == "check-bundle":
        return _check_bundle(args)
    return _status(args)


def _backend(args: argparse.Namespace) -> int:
    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs

    files = BootFiles(args.dir)
    action, slot = args.action, args.slot
    try:
        if action == "get-current":
            current = bs.booted_slot(_read_small(args.cmdline))
            if current is None:
                raise bs.BootStateError("no rauc.slot= on the kernel command line")
            print(current)
        elif action == "get-primary":
            primary = bs.get_primary(files.read().state)
            if primary is None:
                raise bs.BootStateError("no slot has tries left")
            print(primary)
        elif slot is None or (action == "set-state") != (args.value is not None):
            raise bs.BootStateError(
                f"{action}: expected {'SLOT good|bad' if action == 'set-state' else 'SLOT'}"
            )
        elif action == "get-state":
            bs.set_primary(files.read().state, slot)  # checks the slot's name
            print("good" if bs.get_state(files.read().state, slot) else "bad")
        elif action == "set-primary":
            files.change(lambda state: bs.set_primary(state, slot))
        else:
            files.change(lambda state: bs.set_state(state, slot, args.value == "good"))
    except (bs.BootStateError, OSError) as err:
        print(f"bootloader-backend {action}: {err}", file=sys.stderr)
        return 1
    return 0


def _init(directory: Path) -> int:
    from dataclasses import replace

    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs

    files = BootFiles(directory)
    # Copy 0 is the newer: the first boot reads it and writes its decrement into copy 1.
    files.write(1, replace(bs.INITIAL, seq=bs.INITIAL.seq - 1))
    files.write(0, bs.INITIAL)
    print(f"init-bootstate: {files.path(0)} and {files.path(1)}: order A, A 3 tries, B 0")
    return 0


def _status(args: argparse.Namespace) -> int:
    import subprocess

    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs
    from mynabox.update import raucstatus

    cmdline = _read_small(args.cmdline)
    print(f"booted slot: {bs.booted_slot(cmdline) or 'unknown (no rauc.slot=)'}")
    damage = bs.boot_damage(cmdline)
    print(f"boot state at boot: {damage.value if damage else 'unknown (not booted by boot.scr)'}")
    try:
        reading = BootFiles(args.dir).read()
        state = reading.state
        print(
            f"boot state now: order {' '.join(state.order) or '-'}, tries A {state.a_left} B {state.b_left}, "
            f"seq {state.seq} (copy {reading.source}, {reading.damage.value})"
        )
    except OSError as err:
        print(f"boot state now: unreadable ({err.strerror})")
    try:
        if args.rauc_json is not None:
            raw = _read_small(args.rauc_json, raucstatus.MAX_BYTES + 1)
        else:
            done = subprocess.run(
                ["rauc", "status", "--detailed", "--output-format=json"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason"]
                print(f"rauc status failed: {raucstatus.printable(reason[0])}", file=sys.stderr)
                return 1
            raw = done.stdout.decode("utf-8", "replace")
        status = raucstatus.parse(raw)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"rauc status: {err}", file=sys.stderr)
        return 1
    except raucstatus.StatusError as err:
        print(f"rauc status: {err}", file=sys.stderr)
        return 1
    for line in raucstatus.describe(status):
        print(line)
    return 0


def _check_bundle(args: argparse.Namespace) -> int:
    import configparser
    import subprocess

    import mynabox
    from mynabox.update import bundle
    from mynabox.update.raucstatus import printable

    try:
        conf = configparser.ConfigParser(interpolation=None, strict=False)
        conf.read_string(_read_small(args.conf))
        compatible = conf.get("system", "compatible")
        done = subprocess.run(
            ["rauc", "-c", str(args.conf), "info", "--output-format=json", str(args.bundle)],
            capture_output=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            lines = [
                line
                for line in done.stderr.decode("utf-8", "replace").splitlines()
                if line.strip() and not line.startswith("rauc-Message")
            ]
            raise bundle.BundleRefused(f"RAUC refused it: {printable(lines[-1] if lines else 'no reason')}")
        info = bundle.parse_info(done.stdout.decode("utf-8", "replace"))
        _check_payload(args.bundle)
        verdict = bundle.check(
            info,
            compatible=compatible,
            running=args.running or mynabox.__version__,
            force_older=args.force_older,
        )
    except bundle.BundleRefused as err:
        print(f"check-bundle: refused: {err}", file=sys.stderr)
        return 1
    except (OSError, subprocess.TimeoutExpired, configparser.Error) as err:
        print(f"check-bundle: {err}", file=sys.stderr)
        return 1
    print(f"check-bundle: ok: {verdict} ({info.compatible}, build {info.build or '-'})")
    return 0


def _check_payload(path: Path) -> None:
    """The whole payload against the signed hash tree (rauc info checked the signature just before)."""
    from mynabox.update import bundle, verity

    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - 8))
            offset, length = verity.signature_span(size, f.read(8))
            f.seek(offset)
            lay = verity.layout(verity.signed_manifest(f.read(length)), size, offset)

            def read(at: int, count: int) -> bytes:
                f.seek(at)
                return f.read(count)

            verity.verify(read, lay)
    except verity.VerityError as err:
        raise bundle.BundleRefused(str(err)) from None


def _read_small(path: Path, limit: int = 64 * 1024) -> str:
    with path.open("rb") as f:
        return f.read(limit).decode("utf-8", "replace")
