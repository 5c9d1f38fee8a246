"""The image scripts (image-build/*.py, named with dashes) as modules for their host tests, and an MBR card
image whose first partition is a FAT, for the tests that read boot-state copies off a card."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"


def load(name: str) -> ModuleType:
    """image-build/<name>.py (e.g. "cut-test") as the module `cut_test`, registered in sys.modules (its
    dataclasses look their module up), with image-build on sys.path (the scripts import vmbox)."""
    if str(IMAGE_BUILD) not in sys.path:
        sys.path.insert(0, str(IMAGE_BUILD))
    module_name = name.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, IMAGE_BUILD / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def fat_card(tmp_path: Path) -> Path:
    """An MBR card image (1 MiB before its partition, as genimage lays the image out) with an empty 8 MiB
    FAT as partition 1 (type 0x0c); needs dosfstools."""
    fat = tmp_path / "fat.img"
    subprocess.run(["mkfs.vfat", "-C", str(fat), str(8 * 1024)], check=True, capture_output=True)
    image = tmp_path / "card.img"
    mbr = bytearray(1 << 20)
    mbr[446:462] = struct.pack("<BBBBBBBBII", 0, 0, 0, 0, 0x0C, 0, 0, 0, 2048, 16384)
    mbr[510:512] = b"\x55\xaa"
    image.write_bytes(bytes(mbr) + fat.read_bytes())
    return image
