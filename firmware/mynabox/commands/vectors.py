"""`mynabox gateway-vectors --out DIR`: write the gateway contract's test vectors (docs/gateway/vectors/).

Deterministic: the same files every time, so the checked-in ones can be compared with a fresh run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="directory to write (e.g. docs/gateway/vectors)"
    )


def run(args: argparse.Namespace) -> int:
    from mynabox.adapters.files import write_atomic
    from mynabox_testkit.vectors import build

    files = build()
    for name, data in sorted(files.items()):
        target = args.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, mode=0o644)
    print(f"wrote {len(files)} files to {args.out}")
    return 0
