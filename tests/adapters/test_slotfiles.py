"""Reading the new slot's declaration out of a real ext4 file system with the real debugfs, unmounted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mynabox.adapters import slotfiles

pytestmark = pytest.mark.skipif(
    shutil.which("debugfs") is None or shutil.which("mke2fs") is None, reason="e2fsprogs missing"
)
SITE = "opt/mynabox/venv/lib/python3.13/site-packages"


def ext4(tmp_path: Path, files: dict[str, bytes]) -> Path:
    tree = tmp_path / "tree"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    image = tmp_path / "slot.ext4"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(image), "8M"], check=True)
    return image


def test_the_file_is_read_from_the_slots_site_packages(tmp_path: Path) -> None:
    image = ext4(tmp_path, {f"{SITE}/mynabox/data/storage-formats.json": b'{"outbox": {}}\n'})
    before = image.read_bytes()
    site = slotfiles.site_packages(image)
    assert site == "/" + SITE
    assert slotfiles.read_text(image, f"{site}/mynabox/data/storage-formats.json", 100) == '{"outbox": {}}\n'
    assert image.read_bytes() == before  # read-only: the slot stays bit for bit as RAUC wrote it


def test_a_missing_file_a_large_one_and_a_missing_device_are_refused(tmp_path: Path) -> None:
    image = ext4(tmp_path, {f"{SITE}/big": b"x" * 5000})
    with pytest.raises(slotfiles.SlotFileError, match="File not found"):
        slotfiles.read_text(image, f"/{SITE}/mynabox/data/storage-formats.json", 100)
    with pytest.raises(slotfiles.SlotFileError, match="larger than 4096 bytes"):
        slotfiles.read_text(image, f"/{SITE}/big", 4096)
    with pytest.raises(slotfiles.SlotFileError, match="No such file"):
        slotfiles.read_text(tmp_path / "absent.ext4", "/x", 100)
    with pytest.raises(slotfiles.SlotFileError, match="not a plain absolute path"):
        slotfiles.read_text(image, '/x" ; rm', 100)


@pytest.mark.parametrize("dirs", [(), ("python3.11", "python3.13")], ids=["none", "two"])
def test_site_packages_needs_exactly_one_python(tmp_path: Path, dirs: tuple[str, ...]) -> None:
    lib = "opt/mynabox/venv/lib"
    files = {f"{lib}/{d}/site-packages/x": b"" for d in dirs} or {f"{lib}/x": b""}
    with pytest.raises(slotfiles.SlotFileError, match=f"found {len(dirs)}"):
        slotfiles.site_packages(ext4(tmp_path, files))
