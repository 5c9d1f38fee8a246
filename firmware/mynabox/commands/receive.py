"""`mynabox receive`: the reference gateway receiver (verify, decrypt, dedupe, print in Japanese).

``--quarantined`` lists the refused messages kept in the state directory's store and exits;
``--forget-device ID`` retires the key a box signed with (a box lost or out of service) and exits; a
re-enrolled box needs nothing but its new key file (docs/gateway.md, "Replay").
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mynabox.gateway.pages import PageServer, PageStore

_REQUIRED = ("broker", "ca", "cert", "key", "gateway_key", "device_keys")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Required unless --quarantined (checked in run).
    parser.add_argument("--broker", help="HOST:PORT of the MQTT broker (TLS)")
    parser.add_argument("--ca", type=Path, help="CA certificate that signed the broker's")
    parser.add_argument("--cert", type=Path, help="the gateway's client certificate")
    parser.add_argument("--key", type=Path, help="the gateway's client key")
    parser.add_argument("--gateway-key", type=Path, help="the gateway's envelope private key")
    parser.add_argument("--device-keys", type=Path, help="directory of <device id>.pem device public keys")
    parser.add_argument("--json-out", type=Path, help="also write each message as <dir>/<device>/<id>.json")
    parser.add_argument(
        "--fhir-out",
        type=Path,
        help="also write each summary as a FHIR R4 Bundle, <dir>/<device>/<id>.fhir.json",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path("."), help="where the seen-id store lives (default: .)"
    )
    parser.add_argument(
        "--client-id",
        default="mynabox-gateway",
        help="MQTT client id (persistent session); a broker set up as docs/gateway uses the certificate's CN",
    )
    parser.add_argument("--once", action="store_true", help="exit after the first accepted message")
    parser.add_argument("--max-age-days", type=int, default=7, help="refuse synced messages older than this")
    parser.add_argument(
        "--quarantined", action="store_true", help="list the refused messages kept in --state-dir, then exit"
    )
    parser.add_argument(
        "--forget-device",
        metavar="ID",
        help="retire the key box ID signed with (lost, or out of service): its messages are refused from"
        " then on, then exit; re-enrolling a box needs only its new key in --device-keys",
    )
    parser.add_argument(
        "--pages",
        metavar="[HOST:]PORT",
        help="serve the received summaries as pages for a tablet or printer (HOST defaults to 127.0.0.1)",
    )
    parser.add_argument(
        "--page-retention-hours",
        type=float,
        default=24.0,
        help="how long a page is kept in memory and listed (default 24)",
    )
    parser.add_argument(
        "--page-host-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the tablet uses for the pages (Host header; repeatable): other names are refused",
    )
    parser.add_argument(
        "--page-device-mb", type=int, default=32, help="pages kept per device, in MB (default 32)"
    )
    parser.add_argument(
        "--page-total-mb", type=int, default=128, help="pages kept in all, in MB (default 128)"
    )
    parser.add_argument(
        "--page-max-connections", type=int, default=32, help="page connections at once (default 32)"
    )
    parser.add_argument("--page-tls-cert", type=Path, help="serve the pages over TLS with this certificate")
    parser.add_argument("--page-tls-key", type=Path, help="the key of --page-tls-cert")
    parser.add_argument(
        "--page-client-ca",
        type=Path,
        help="require tablets' client certificates signed by this CA (needed off loopback)",
    )


def _broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("--broker must be HOST:PORT")
    return host, int(port)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("--pages must be [HOST:]PORT")
    return host or "127.0.0.1", int(port)


def _page_server(args: argparse.Namespace, store: PageStore) -> PageServer:
    """The page server as asked; off loopback only with TLS and client certificates (the pages hold patient
    data and a network is not trusted)."""
    import ipaddress
    import ssl

    from mynabox.gateway.pages import PageServer, ServerLimits, server_context

    host, port = _listen(args.pages)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    tls = None
    if args.page_tls_cert is not None or args.page_tls_key is not None or args.page_client_ca is not None:
        if args.page_tls_cert is None or args.page_tls_key is None:
            raise ValueError("--page-tls-cert and --page-tls-key go together")
        try:
            tls = server_context(args.page_tls_cert, args.page_tls_key, args.page_client_ca)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"TLS files: cannot load ({type(err).__name__})") from err
    if not loopback and (tls is None or args.page_client_ca is None):
        raise ValueError("off loopback the pages need --page-tls-cert, --page-tls-key and --page-client-ca")
    limits = ServerLimits(max_connections=args.page_max_connections)
    if limits.max_connections < 1:
        raise ValueError("--page-max-connections must be at least 1")
    return PageServer(store, host, port, limits=limits, names=args.page_host_name, tls=tls)


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from mynabox.adapters.keyfiles import load_private_key, load_public_keys
    from mynabox.gateway.core import Accepted, ReceiverCore, ReceiverError, Verdict
    from mynabox.gateway.formatting import format_opened, format_quarantined
    from mynabox.gateway.pages import MIB, PageStore
    from mynabox.gateway.sink import write_fhir, write_json
    from mynabox.gateway.store import SeenStore
    from mynabox.gateway.subscriber import Receiver, ReceiverSettings
    from mynabox.gateway.text import visible
    from mynabox.payload.envelope import MAX_MESSAGE_BYTES
    from mynabox.payload.keys import KeyFileError
    from mynabox.payload.seal import Opened, Opener

    if args.quarantined or args.forget_device is not None:
        try:
            store = SeenStore(args.state_dir / "receiver-seen.sqlite3")
        except ReceiverError as err:
            print(f"mynabox receive: {err}", file=sys.stderr)
            return 2
        try:
            if args.forget_device is not None:
                device = visible(args.forget_device)
                key = store.forget_device(args.forget_device, now=datetime.now(UTC))
                print(
                    f"retired the key of {device} (thumbprint {key}): its messages are refused from now on;"
                    f" a re-enrolled box signs with a new key ({device}.pem), its numbers start again at 1"
                    if key
                    else f"no key recorded for {device}: nothing retired (none of its messages was accepted)"
                )
            else:
                for entry in store.quarantined():
                    print(format_quarantined(entry))
        finally:
            store.close()
        return 0
    missing = [f"--{name.replace('_', '-')}" for name in _REQUIRED if getattr(args, name) is None]
    if missing:
        print(f"mynabox receive: {', '.join(missing)} required", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    try:
        host, port = _broker(args.broker)
        max_age = timedelta(days=args.max_age_days)
        opener = Opener(
            load_private_key(args.gateway_key),
            load_public_keys(args.device_keys),
            max_age=max_age,
            max_skew=timedelta(minutes=5),
            max_size=MAX_MESSAGE_BYTES,  # the one limit the box seals to and the broker configs enforce
        )
        args.state_dir.mkdir(parents=True, exist_ok=True)
        seen = SeenStore(args.state_dir / "receiver-seen.sqlite3")
        seen.prune(max_age * 2, now=datetime.now(UTC))
        for device_id, key in sorted(opener.thumbprints.items()):
            if seen.retired(key):  # every message would be refused: say so now, not per message
                print(
                    f"mynabox receive: the key of {device_id} is retired (--forget-device):"
                    " its messages are refused; install the key of its re-enrolled box",
                    file=sys.stderr,
                )
    except (ValueError, KeyFileError, ReceiverError, OSError) as err:
        print(f"mynabox receive: {err}", file=sys.stderr)
        return 2

    pages: PageServer | None = None
    page_store: PageStore | None = None
    if args.pages is not None:
        try:
            page_store = PageStore(
                retention=timedelta(hours=args.page_retention_hours),
                max_device_bytes=args.page_device_mb * MIB,
                max_total_bytes=args.page_total_mb * MIB,
            )
            pages = _page_server(args, page_store)
        except (ValueError, OverflowError, OSError) as err:
            print(f"mynabox receive: pages: {err}", file=sys.stderr)
            return 2
        pages.start()
        scheme = "https" if args.page_tls_cert is not None else "http"
        where = args.pages.rpartition(":")[0] or "127.0.0.1"
        print(
            f"mynabox receive: pages on {scheme}://{where}:{pages.port}/ (at most {pages.cap} connections)",
            file=sys.stderr,
            flush=True,
        )

    done = threading.Event()

    def sink(opened: Opened) -> None:
        text = format_opened(opened, today=datetime.now(UTC).date())  # first: it fails on the message alone
        if page_store is not None:
            page_store.add(
                opened
            )  # renders its page: a message that cannot be shown fails here, before the file
        if args.json_out is not None:
            write_json(args.json_out, opened)
        if args.fhir_out is not None:
            write_fhir(args.fhir_out, opened)
        print(text, flush=True)

    def on_verdict(verdict: Verdict) -> None:
        if args.once and isinstance(verdict, Accepted):
            done.set()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    settings = ReceiverSettings(host, port, args.ca, args.cert, args.key, client_id=args.client_id)
    try:
        receiver = Receiver(
            settings, ReceiverCore(opener, seen, sink, check_bodies=True), on_verdict=on_verdict
        )
    except ReceiverError as err:
        print(f"mynabox receive: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    receiver.start()
    try:
        while not done.wait(0.5):
            if receiver.refused is not None:
                print(f"mynabox receive: {receiver.refused}", file=sys.stderr)
                return 1
    finally:
        receiver.stop()
        seen.close()
        if pages is not None:
            pages.stop()
    return 0
