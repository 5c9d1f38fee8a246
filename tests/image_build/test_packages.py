"""The image's package list carries what the firmware needs from Debian at run time (the first boot test
found an image without the OLED's fonts: every screen failed to render)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def image_packages() -> set[str]:
    lines = (ROOT / "image-build/packages.txt").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}


def test_the_fonts_the_renderer_names_are_in_the_image() -> None:
    named = set(re.findall(r'"(fonts-[a-z0-9-]+)"', (ROOT / "firmware/mynabox/render/fonts.py").read_text()))
    assert named == {"fonts-unifont", "fonts-misaki"}
    assert named <= image_packages()


def test_the_reader_stack_and_the_growers_tools_are_in_the_image() -> None:
    # pcscd + CCID for the reader; sfdisk (fdisk) and partx, blkid (util-linux, essential) for grow-state.
    assert {"pcscd", "libccid", "fdisk", "initramfs-tools", "python3-venv"} <= image_packages()


def test_the_bench_tools_the_docs_name_are_in_the_image() -> None:
    # hw/README.md and the rig file send the technician to `i2cdetect -y 1`; gpioinfo shows the lines.
    assert "i2cdetect" in (ROOT / "hw/README.md").read_text()
    assert {"i2c-tools", "gpiod"} <= image_packages()
