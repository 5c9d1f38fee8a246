"""`FatImage.tree_files` reads a directory tree's clusters from the directory entries and the FAT itself
(names never go back to mtools): checked against mtools' own `mshowfat` on FAT12, FAT16 and FAT32 images made
by mkfs.vfat, with fragmented files, subdirectories, long names and empty files."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest
from tests.fleet.conftest import need

from mynabox.fleet.fatimage import FatImage, chain, dir_entries, fat_bits

TOP = PurePosixPath("/mynabox")


def image(path: Path, bits: int) -> FatImage:
    need("mkfs.vfat")
    need("mcopy")
    with path.open("wb") as f:
        f.truncate({12: 1, 16: 8, 32: 40}[bits] * 1024 * 1024)
    subprocess.run(["mkfs.vfat", "-F", str(bits), "-s", "1", str(path)], check=True, capture_output=True)
    return FatImage(path, offset=0)


def forget_next_free(target: Path) -> None:
    """FSInfo's next-free hint set to "unknown" (0xFFFFFFFF): the allocator starts from cluster 2."""
    with target.open("r+b") as f:
        f.seek(48)
        fsinfo = int.from_bytes(f.read(2), "little")
        f.seek(fsinfo * 512 + 492)
        f.write(b"\xff" * 4)


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_tree_files_are_the_clusters_mtools_shows(tmp_path: Path, bits: int) -> None:
    fat = image(tmp_path / "fat.img", bits)
    assert fat.geometry.fat_bits == bits
    fat.mkdir(TOP)
    fat.mkdir(TOP / "credentials")
    fat.mkdir(TOP / "credentials" / "deeper")
    files = {
        TOP / "a": 3000,
        TOP / "a long file name.json": 700,
        TOP / "credentials" / "b": 9000,
        TOP / "credentials" / "deeper" / "c": 1500,
        TOP / "empty": 0,
    }
    fat.write(TOP / "gap1", bytes(2048))  # freed below: later files land in the holes, fragmented
    fat.write(TOP / "gap2", bytes(512))
    for path, size in files.items():
        fat.write(path, bytes([len(path.name)]) * size)
        if path.name == "a":
            fat._mtools("mdel", f"::{TOP}/gap1")
            fat._mtools("mdel", f"::{TOP}/gap2")
            if bits == 32:
                forget_next_free(fat.target)  # else FAT32 allocates after the last cluster used
    expected = sorted(fat.clusters(p) for p, size in files.items() if size)
    assert any(c != list(range(c[0], c[0] + len(c))) for c in expected)  # some file is fragmented
    assert sorted(fat.tree_files(TOP)) == expected


def test_dir_entries_skip_what_is_not_a_file_or_directory() -> None:
    def entry(name: bytes, attr: int, start: int, high: int = 0) -> bytes:
        e = bytearray(32)
        e[0:11], e[11] = name.ljust(11), attr
        e[20:22], e[26:28] = high.to_bytes(2, "little"), start.to_bytes(2, "little")
        return bytes(e)

    data = b"".join(
        [
            entry(b".", 0x10, 5),
            entry(b"..", 0x10, 0),
            entry(b"\xe5ELETED", 0x20, 6),
            entry(b"ALONGNAME", 0x0F, 7),
            entry(b"LABEL", 0x08, 0),
            entry(b"EMPTY", 0x20, 0),
            entry(b"FILE", 0x20, 8, high=1),
            entry(b"SUB", 0x10, 9),
            bytes(32),
            entry(b"AFTEREND", 0x20, 10),
        ]
    )
    assert [(e.start, e.directory) for e in dir_entries(data, 16)] == [(8, False), (9, True)]
    assert [e.start for e in dir_entries(data, 32)] == [0x10008, 9]


def test_chains_stop_at_loops_free_entries_and_the_end() -> None:
    fat16 = b"".join(v.to_bytes(2, "little") for v in [0xFFF8, 0xFFFF, 3, 4, 0xFFFF, 6, 5, 0, 0xFFF7])
    assert chain(fat16, 16, 2, 7) == [2, 3, 4]
    assert chain(fat16, 16, 5, 7) == [5, 6]  # 6 -> 5: a loop
    assert chain(fat16, 16, 7, 7) == [7]  # free
    assert chain(fat16, 16, 9, 7) == []  # out of range
    assert chain(b"", 32, 2, 100) == [2]  # past the FAT's end
    assert [fat_bits(n) for n in (4084, 4085, 65524, 65525)] == [12, 16, 16, 32]
