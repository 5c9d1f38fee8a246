"""`mynabox vcard`: serve a virtual My Number Card to a vpcd reader until stopped."""

from __future__ import annotations

import argparse
import hashlib
import signal
import threading


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
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
