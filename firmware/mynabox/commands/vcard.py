"""`mynabox vcard`: serve a virtual My Number Card to a vpcd reader until stopped.

`mynabox vcard tap PATIENT --dir DIR`: tap a synthetic patient's card on the box `mynabox devbox --dir DIR`
runs: the card stays in the field until the box has read it (no APDU for a moment), then leaves.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import threading
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("tap",), help="tap: one read on a running devbox")
    parser.add_argument(
        "tap_patient", nargs="?", metavar="PATIENT", help="with tap: a synthetic patient's key"
    )
    parser.add_argument("--dir", type=Path, help="with tap: the devbox's directory")
    parser.add_argument("--hold-s", type=float, default=20.0, help="with tap: at most this long in the field")
    parser.add_argument("--host", default="127.0.0.1", help="where vpcd listens (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=35963, help="vpcd port of the slot (default 35963)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--card-id", help="the card's opaque id (the auth certificate's CN)")
    who.add_argument("--patient", help="a synthetic patient's key, e.g. warfarin-elderly")
    parser.add_argument("--no-extended", action="store_true", help="refuse extended-length APDUs (6700)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="per-APDU turnaround")
    parser.add_argument("--baud", type=int, choices=(106, 212, 424, 848), help="air speed in kbit/s")
    parser.add_argument("--remove-after", type=int, metavar="N", help="leave the field after N APDUs")
    parser.add_argument("--non-jpki", action="store_true", help="an ISO card without the JPKI AP")
    parser.add_argument("--mute", action="store_true", help="a card that gives no ATR")


def tap(args: argparse.Namespace) -> int:
    """Present the card, wait until the reads stop (1.5 s without an APDU), remove it."""
    import json
    import time

    from mynabox_testkit.mynacard import VirtualMyNumberCard
    from mynabox_testkit.patients import PATIENTS
    from mynabox_testkit.vpcd import VpcdCardServer

    keys = {p.key: p for p in PATIENTS}
    if args.tap_patient not in keys or args.dir is None:
        print(
            f"usage: mynabox vcard tap PATIENT --dir DIR; PATIENT one of {', '.join(keys)}", file=sys.stderr
        )
        return 2
    try:
        state = json.loads((args.dir / "devbox.json").read_text(encoding="utf-8"))
        port = int(state["vpcd_port"])
    except (OSError, ValueError, KeyError, TypeError):
        print(f"mynabox vcard: no devbox running in {args.dir} (devbox.json)", file=sys.stderr)
        return 2
    card = VirtualMyNumberCard(keys[args.tap_patient].card_id)
    server = VpcdCardServer(card, host="127.0.0.1", port=port).start(timeout=15)
    deadline = time.monotonic() + args.hold_s
    seen, quiet_since = 0, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if card.apdu_count != seen:
            seen, quiet_since = card.apdu_count, time.monotonic()
        elif seen and time.monotonic() - quiet_since > 1.5:
            break
    server.remove()
    print(f"tapped {args.tap_patient}: {seen} APDUs", flush=True)
    return 0 if seen else 1


def run(args: argparse.Namespace) -> int:
    if args.action == "tap":
        return tap(args)
    from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
    from mynabox_testkit.patients import patient
    from mynabox_testkit.vpcd import VpcdCardServer

    card_id = args.card_id or patient(args.patient or "healthy").card_id
    faults = Faults(
        remove_after=args.remove_after,
        latency_s=args.latency_ms / 1000,
        baud=args.baud,
        non_jpki=args.non_jpki,
        mute=args.mute,
    )
    card = VirtualMyNumberCard(card_id, extended=not args.no_extended, faults=faults)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    label = hashlib.sha256(card_id.encode()).hexdigest()[:8]
    server = VpcdCardServer(card, host=args.host, port=args.port).start(timeout=30)
    print(f"virtual card {label} presented on {args.host}:{args.port}", flush=True)
    stop.wait()
    server.remove()
    print(f"virtual card {label} removed after {card.apdu_count} APDUs", flush=True)
    return 0
