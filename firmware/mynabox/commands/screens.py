"""`mynabox screens OUTDIR`: render every screen to PNG (1:1 and ×4 for review)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", type=Path, help="directory for the PNG files")


def run(args: argparse.Namespace) -> int:
    from mynabox.render.catalog import catalog
    from mynabox.render.draw import render

    args.outdir.mkdir(parents=True, exist_ok=True)
    for name, screen in catalog().items():
        image = render(screen)
        image.save(args.outdir / f"{name}.png")
        image.resize((image.width * 4, image.height * 4)).save(args.outdir / f"{name}@4x.png")
        print(args.outdir / f"{name}.png")
    return 0
