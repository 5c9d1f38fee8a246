"""`mynabox provision`: one vehicle's identity onto a flashed card or image file (offline, no root).

mynabox provision keys --device-id amb-0001 --out DIR   new device keys; prints the public key and CSRs
mynabox provision gateway-keys --out DIR                the gateway's envelope key pair (PKCS#8 / SPKI PEM)
mynabox provision check VEHICLE.toml                    every check, nothing written
mynabox provision write VEHICLE.toml TARGET             TARGET: image, card or FAT partition
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_REFUSED = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    keys = sub.add_parser("keys", help="generate the device's keys and CSRs (and a vehicle.toml stub)")
    keys.add_argument("--device-id", required=True)
    keys.add_argument("--out", type=Path, required=True, help="directory for the keys (created, 0600 files)")
    gateway = sub.add_parser(
        "gateway-keys", help="generate the gateway's envelope key pair (once per gateway, not per box)"
    )
    gateway.add_argument("--out", type=Path, required=True, help="directory for the key pair")
    check = sub.add_parser("check", help="check a vehicle file and its keys; write nothing")
    check.add_argument("vehicle", type=Path)
    write = sub.add_parser("write", help="check, then write the identity onto the card's FAT partition")
    write.add_argument("vehicle", type=Path)
    write.add_argument("target", type=Path, help="SD image file, card block device, or the FAT partition")


def run(args: argparse.Namespace) -> int:
    from mynabox.fleet.bundle import BundleError, load_vehicle
    from mynabox.fleet.fatimage import FatError, FatImage, NotATarget
    from mynabox.fleet.provision import generate_gateway_keys, generate_keys, write_bundle

    started = time.monotonic()
    if args.action == "keys":
        try:
            keys = generate_keys(args.out, args.device_id)
        except (ValueError, OSError) as err:
            print(f"provision: refused: {err}", file=sys.stderr)
            return EXIT_REFUSED
        print(f"# {keys.directory}: keys written (0600). Register these:")
        print("# the device's sealing public key (gateway's known devices):")
        sys.stdout.write(keys.device_public.decode())
        for role, csr in keys.csrs.items():
            print(f"# {role}.csr (have it signed into {role}.pem):")
            sys.stdout.write(csr.decode())
        return 0
    if args.action == "gateway-keys":
        try:
            public = generate_gateway_keys(args.out)
        except OSError as err:
            print(f"provision: refused: {err}", file=sys.stderr)
            return EXIT_REFUSED
        print(
            f"# {args.out}: gateway-envelope-key.pem (0600: the gateway's only) and gateway-envelope.pub.pem"
        )
        print("# every box seals to this public key (the vehicle file's gateway key):")
        sys.stdout.write(public.decode())
        return 0
    try:
        bundle = load_vehicle(args.vehicle)
    except BundleError as err:
        print(f"provision: {args.vehicle}: refused, nothing written:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_REFUSED
    if args.action == "check":
        print(f"{args.vehicle}: OK (bundle {bundle.id})")
        return 0
    try:
        fat = FatImage(args.target)
        write_bundle(fat, bundle)
    except NotATarget as err:
        print(f"provision: refused, nothing written: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except FatError as err:
        print(f"provision: {args.target}: {err}", file=sys.stderr)
        return 1
    print(
        f"{args.target}: bundle {bundle.id} written ({len(bundle.files)} files) in "
        f"{time.monotonic() - started:.1f} s; the box takes it in at first boot"
    )
    return 0
