"""`mynabox firstboot`: take the provisioning bundle from the FAT partition into the state partition.

Run by mynabox-firstboot.service as root, before the FAT partition is mounted. Idempotent; see
mynabox.fleet.firstboot for the order that makes a power cut safe. It never ends in a traceback: the
bundle is outside input, and the unit's log is where fleet ops look.
"""

from __future__ import annotations

import argparse
import pwd
import sys
from collections.abc import Callable
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fat",
        type=Path,
        default=Path("/dev/disk/by-label/MYNA-BOOT"),
        help="the FAT partition, or an image holding it",
    )
    parser.add_argument("--state", type=Path, default=Path("/var/lib/mynabox"))
    parser.add_argument("--owner", default="mynabox", help="the service user who owns the identity")


def run(args: argparse.Namespace, checkpoint: Callable[[str], None] = lambda _: None) -> int:
    """`checkpoint`: see `run_firstboot` (the CLI passes none; a test passes one that kills the process)."""
    from mynabox.fleet.fatimage import FatError, FatImage
    from mynabox.fleet.firstboot import Owner, run_firstboot

    try:
        user = pwd.getpwnam(args.owner)
    except KeyError:
        print(f"firstboot: no user {args.owner!r}", file=sys.stderr)
        return 1
    try:
        fat = FatImage(args.fat)
        outcome = run_firstboot(fat, args.state, Owner(user.pw_uid, user.pw_gid), checkpoint)
    except (FatError, OSError) as err:
        print(f"firstboot: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the last net: a clear line in the journal, no traceback
        print(
            f"firstboot: failed ({type(err).__name__}); the FAT partition may still hold the bundle",
            file=sys.stderr,
        )
        return 1
    if outcome.installed:
        print(f"firstboot: identity {outcome.installed} installed in {args.state}")
    if outcome.wiped:
        print(f"firstboot: {outcome.wiped} provisioning files overwritten and deleted from the FAT partition")
    if outcome.problem:
        print(f"firstboot: {outcome.problem}", file=sys.stderr)
        return 1
    return 0
