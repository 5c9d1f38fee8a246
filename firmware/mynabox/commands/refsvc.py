"""`mynabox refsvc`: run the reference summary service (HTTPS + mTLS) with the synthetic patients."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import date
from types import FrameType


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date YYYY-MM-DD") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="port; 0 picks a free one (default 8443)")
    parser.add_argument("--cert", required=True, help="server certificate (PEM)")
    parser.add_argument("--key", required=True, help="server private key (PEM)")
    parser.add_argument("--client-ca", required=True, help="CA that issues the boxes' client certificates")
    parser.add_argument(
        "--today", type=_day, help="date the summaries are built for (default: the real date)"
    )


def run(args: argparse.Namespace) -> int:
    import logging
    import ssl

    from mynabox_testkit.refsvc import ReferenceService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service = ReferenceService(
            cert_file=args.cert,
            key_file=args.key,
            client_ca_file=args.client_ca,
            host=args.host,
            port=args.port,
            today=args.today,
        )
    except (OSError, ssl.SSLError) as exc:
        print(f"mynabox refsvc: cannot start: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on the serving thread.
        threading.Thread(target=service.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"refsvc listening on https://{args.host}:{service.port}", flush=True)
    try:
        service.serve_forever()
    finally:
        service.stop()
    return 0
