"""`mynabox fleet versions`: every box's version, slot and last update result from a broker's retained
`mynabox/<device>/state` topics (mynabox.fleet.versions). Fleet ops run it with a certificate the broker
lets read those topics (the gateway's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    versions = sub.add_parser("versions", help="every box's version and update result (retained state)")
    versions.add_argument("--host", required=True)
    versions.add_argument("--port", type=int, default=8883)
    versions.add_argument("--ca", type=Path, required=True, help="the broker's CA")
    versions.add_argument("--cert", type=Path, required=True, help="a certificate that may read the state")
    versions.add_argument("--key", type=Path, required=True)
    versions.add_argument("--wait", type=float, default=3.0, help="seconds to collect retained messages")


def run(args: argparse.Namespace) -> int:
    import ssl

    from mynabox.fleet import versions
    from mynabox.tls import TlsFilesError

    try:
        boxes = versions.collect(
            args.host, args.port, ca=args.ca, cert=args.cert, key=args.key, wait_s=max(0.0, args.wait)
        )
    except TlsFilesError as err:
        print(f"fleet versions: TLS files unusable ({err})", file=sys.stderr)
        return 2
    except (OSError, ssl.SSLError, ConnectionError) as err:
        print(f"fleet versions: broker {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    for line in versions.table(boxes):
        print(line)
    print(f"{len(boxes)} box(es)", file=sys.stderr)
    return 0
