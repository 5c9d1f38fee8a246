"""The SD card's FAT boot partition, read and written with mtools: no mount, no root, no loop device.

The target is an image file or a block device, either a whole card (the FAT partition is found in its MBR)
or the partition itself. Deleting a file on FAT only marks its clusters free, and mtools may put a rewritten
file in new clusters, so `wipe` first overwrites the file's clusters with zeros in place (their byte offsets
from `mshowfat` and the boot sector), then deletes it.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_READ = 256 * 1024  # the bundle's files are a few kB each
_TIMEOUT_S = 30
_FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
_RANGE = re.compile(r"<(\d+)(?:-(\d+))?>")


class FatError(Exception):
    """The target is not a usable FAT file system, or an mtools step failed."""


class NotATarget(FatError):
    """The target is neither an image file nor a block device (a FIFO, a directory, a terminal...)."""


@dataclass(frozen=True)
class Geometry:
    cluster_bytes: int
    data_start: int  # byte offset of cluster 2 within the partition
    clusters: int


def partition_offset(target: Path) -> int:
    """Offset of the FAT file system in `target`: 0 for a bare partition, else MBR partition 1's start."""
    sector = _read_at(target, 0, 512)
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        raise FatError(f"{target}: no boot sector or MBR")
    if _looks_like_fat_boot_sector(sector):
        return 0
    entry = sector[446:462]
    ptype = entry[4]
    lba, count = struct.unpack_from("<II", entry, 8)
    if ptype not in _FAT_TYPES or lba == 0 or count == 0:
        raise FatError(f"{target}: partition 1 is not a FAT partition (type {ptype:#04x})")
    return int(lba) * 512


def _looks_like_fat_boot_sector(sector: bytes) -> bool:
    bytes_per_sector = struct.unpack_from("<H", sector, 11)[0]
    return sector[0] in (0xE9, 0xEB) and bytes_per_sector in (512, 1024, 2048, 4096) and sector[16] in (1, 2)


def _read_at(path: Path, offset: int, size: int) -> bytes:
    """Never blocks: opened non-blocking and read only if it is a regular file or a block device (a FIFO
    would wait for a writer forever, a character device could stream without end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise FatError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from err
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise NotATarget(f"{path}: {_kind(mode)}, not an image file or a block device")
        return os.pread(fd, size, offset)
    except OSError as err:
        raise FatError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from err
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"))
    return next((name for test, name in kinds if test(mode)), "a socket")


class FatImage:
    """One FAT file system inside `target` (image file or block device)."""

    def __init__(self, target: Path, offset: int | None = None) -> None:
        self.target = target
        self.offset = partition_offset(target) if offset is None else offset
        self.geometry = self._geometry()

    # mtools addresses a file system inside a larger file as `file@@offset`.
    def _drive(self) -> str:
        return f"{self.target}@@{self.offset}" if self.offset else str(self.target)

    def _mtools(self, *argv: str, data: bytes | None = None) -> bytes:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}
        try:
            done = subprocess.run(
                [argv[0], "-i", self._drive(), *argv[1:]],
                input=data,
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=False,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise FatError(f"{argv[0]}: {err}") from err
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise FatError(f"{argv[0]} {' '.join(argv[1:])}: {message[-1] if message else 'failed'}")
        return done.stdout

    def _geometry(self) -> Geometry:
        bpb = _read_at(self.target, self.offset, 512)
        if len(bpb) < 512 or not _looks_like_fat_boot_sector(bpb):
            raise FatError(f"{self.target}: no FAT file system at offset {self.offset}")
        bytes_per_sector, sectors_per_cluster, reserved, fats, root_entries, total16 = struct.unpack_from(
            "<HBHBHH", bpb, 11
        )
        fat16_size, total32, fat32_size = (
            struct.unpack_from("<H", bpb, 22)[0],
            *struct.unpack_from("<II", bpb, 32),
        )
        fat_size = fat16_size or fat32_size
        total = total16 or total32
        root_bytes = root_entries * 32
        data_start_sectors = reserved + fats * fat_size + -(-root_bytes // bytes_per_sector)
        cluster_bytes = bytes_per_sector * sectors_per_cluster
        if not cluster_bytes or total <= data_start_sectors:
            raise FatError(f"{self.target}: implausible FAT boot sector")
        clusters = (total - data_start_sectors) // sectors_per_cluster
        return Geometry(cluster_bytes, data_start_sectors * bytes_per_sector, clusters)

    def exists(self, path: PurePosixPath) -> bool:
        try:
            self._mtools("mdir", "-b", f"::{path}")
        except FatError:
            return False
        return True

    def list_files(self, directory: PurePosixPath) -> list[PurePosixPath]:
        """Every file under `directory`, recursively (directories themselves left out)."""
        if not self.exists(directory):
            return []
        out = self._mtools("mdir", "-b", "-/", f"::{directory}").decode(errors="replace")
        files = []
        for line in out.splitlines():
            name = line.strip()
            if not name.startswith("::") or name.endswith("/"):
                continue
            files.append(PurePosixPath(name[2:]))
        return sorted(p for p in files if p != directory)

    def read(self, path: PurePosixPath, limit: int = MAX_READ) -> bytes:
        data = self._mtools("mtype", f"::{path}")
        if len(data) > limit:
            raise FatError(f"::{path}: larger than {limit} bytes")
        return data

    def mkdir(self, path: PurePosixPath) -> None:
        if not self.exists(path):
            self._mtools("mmd", "-D", "s", f"::{path}")

    def write(self, path: PurePosixPath, data: bytes) -> None:
        """A new file (an existing one must be wiped first: overwriting could leave its old clusters)."""
        self._mtools("mcopy", "-D", "s", "-", f"::{path}", data=data)

    def clusters(self, path: PurePosixPath) -> list[int]:
        out = self._mtools("mshowfat", f"::{path}").decode(errors="replace")
        numbers: list[int] = []
        for first, last in _RANGE.findall(out):
            numbers.extend(range(int(first), int(last or first) + 1))
        return numbers

    def wipe(self, path: PurePosixPath) -> None:
        """Overwrite the file's clusters with zeros in place, sync, then delete the file."""
        g = self.geometry
        zeros = bytes(g.cluster_bytes)
        try:
            fd = os.open(self.target, os.O_RDWR)
        except OSError as err:
            raise FatError(f"{self.target}: cannot open for writing ({err.strerror})") from err
        try:
            for cluster in self.clusters(path):
                if not 2 <= cluster < g.clusters + 2:
                    raise FatError(f"::{path}: cluster {cluster} out of range")
                os.pwrite(fd, zeros, self.offset + g.data_start + (cluster - 2) * g.cluster_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._mtools("mdel", f"::{path}")

    def remove_tree(self, directory: PurePosixPath) -> None:
        if self.exists(directory):
            self._mtools("mdeltree", f"::{directory}")
