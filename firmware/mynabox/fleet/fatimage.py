"""The SD card's FAT boot partition, read and written with mtools: no mount, no root, no loop device.

The target is an image file or a block device, either a whole card (the FAT partition is found in its MBR)
or the partition itself. Deleting a file on FAT only marks its clusters free, and mtools may put a rewritten
file in new clusters, so `wipe` first overwrites the file's clusters with zeros in place (their byte offsets
from `mshowfat` and the boot sector), then deletes it.

mtools reads every name it is given as a pattern (`[x]` names the file `x`), so a directory whose files are
not ours is wiped by `wipe_tree` without a name: the clusters of every file under it are found from its
directory entries and the FAT (`dir_entries`, `chain`), zeroed, and the tree deleted by its own fixed name.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from mynabox.record import record

MAX_READ = 256 * 1024  # the bundle's files are a few kB each
MAX_DIR_BYTES = 65536 * 32  # FAT's limit: 65,536 entries of 32 bytes in a directory
_TIMEOUT_S = 30
_FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
_RANGE = re.compile(r"<(\d+)(?:-(\d+))?>")


class FatError(Exception):
    """The target is not a usable FAT file system, or an mtools step failed."""


class NotATarget(FatError):
    """The target is neither an image file nor a block device (a FIFO, a directory, a terminal...)."""


@record
class Geometry:
    cluster_bytes: int
    data_start: int  # byte offset of cluster 2 within the partition
    clusters: int
    fat_start: int  # byte offset of the first FAT within the partition
    fat_bytes: int
    fat_bits: int  # 12, 16 or 32


@record
class DirEntry:
    start: int  # first cluster
    directory: bool


def fat_bits(clusters: int) -> int:
    """The FAT type is decided by the count of clusters alone (Microsoft's FAT specification)."""
    return 12 if clusters < 4085 else 16 if clusters < 65525 else 32


def fat_entry(fat: bytes, bits: int, cluster: int) -> int:
    """Entry `cluster` of a FAT (0, free, past its end)."""
    if bits == 12:
        i = cluster + cluster // 2
        pair = int.from_bytes(fat[i : i + 2], "little") if i + 2 <= len(fat) else 0
        return pair >> 4 if cluster & 1 else pair & 0xFFF
    size = bits // 8
    i = cluster * size
    value = int.from_bytes(fat[i : i + size], "little") if i + size <= len(fat) else 0
    return value & 0x0FFFFFFF if bits == 32 else value


def chain(fat: bytes, bits: int, start: int, clusters: int) -> list[int]:
    """The clusters of a file or directory from its first one. Stops at anything that is not a next data
    cluster (the end mark, a free or bad entry: all outside 2..clusters+1) and at a loop."""
    out: list[int] = []
    seen: set[int] = set()
    cluster = start
    while 2 <= cluster < clusters + 2 and cluster not in seen:
        seen.add(cluster)
        out.append(cluster)
        cluster = fat_entry(fat, bits, cluster)
    return out


def dir_entries(data: bytes, bits: int) -> list[DirEntry]:
    """What a FAT directory's bytes list, by first cluster: files and subdirectories, without `.` and `..`,
    deleted entries, long-name pieces, the volume label and empty files (no cluster). Names are not read."""
    out = []
    for i in range(0, len(data) - 31, 32):
        entry = data[i : i + 32]
        first, attr = entry[0], entry[11]
        if first == 0x00:
            break  # the end of the directory
        if first in (0xE5, 0x2E) or attr & 0x0F == 0x0F or attr & 0x08:
            continue  # deleted, `.`/`..`, a long-name piece, the volume label
        high = int.from_bytes(entry[20:22], "little") if bits == 32 else 0
        start = high << 16 | int.from_bytes(entry[26:28], "little")
        if start:
            out.append(DirEntry(start, bool(attr & 0x10)))
    return out


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
        return Geometry(
            cluster_bytes,
            data_start_sectors * bytes_per_sector,
            clusters,
            fat_start=reserved * bytes_per_sector,
            fat_bytes=fat_size * bytes_per_sector,
            fat_bits=fat_bits(clusters),
        )

    def kind(self, path: PurePosixPath) -> str | None:
        """Whether `path` is a "dir" or a "file"; None when nothing is there."""
        if not self.exists(path):
            return None
        try:
            self._mtools("mdir", "-b", f"::{path}/.")  # only a directory has `.` (PurePosixPath drops it)
        except FatError:
            return "file"
        return "dir"

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
        """Overwrite the file's clusters with zeros in place, sync, then delete the file (`path` is one of our
        fixed names: mtools reads it as a pattern)."""
        clusters = self.clusters(path)
        for cluster in clusters:
            if not 2 <= cluster < self.geometry.clusters + 2:
                raise FatError(f"::{path}: cluster {cluster} out of range")
        self.zero(clusters)
        self._mtools("mdel", f"::{path}")

    def zero(self, clusters: list[int]) -> None:
        """Overwrite these data clusters with zeros in place and sync."""
        g = self.geometry
        zeros = bytes(g.cluster_bytes)
        try:
            fd = os.open(self.target, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise FatError(f"{self.target}: cannot open for writing ({err.strerror})") from err
        try:
            for cluster in clusters:
                if 2 <= cluster < g.clusters + 2:
                    os.pwrite(fd, zeros, self.offset + g.data_start + (cluster - 2) * g.cluster_bytes)
            os.fsync(fd)
        except OSError as err:
            raise FatError(f"{self.target}: cannot overwrite ({err.strerror})") from err
        finally:
            os.close(fd)

    def tree_files(self, directory: PurePosixPath) -> list[list[int]]:
        """The clusters of every file under `directory` (ours: a fixed name), at any depth, read from the
        directory entries and the FAT, so that no name found on the card is handed to mtools."""
        g = self.geometry
        fat = _read_at(self.target, self.offset + g.fat_start, g.fat_bytes)
        todo, files, seen = [self.clusters(directory)], list[list[int]](), set[int]()
        while todo:
            clusters = [c for c in todo.pop() if c not in seen]  # a directory listed twice is read once
            clusters = clusters[: max(1, MAX_DIR_BYTES // g.cluster_bytes)]
            seen.update(clusters)
            data = b"".join(self._cluster(c) for c in clusters)
            for entry in dir_entries(data, g.fat_bits):
                (todo if entry.directory else files).append(chain(fat, g.fat_bits, entry.start, g.clusters))
        return files

    def _cluster(self, cluster: int) -> bytes:
        g = self.geometry
        if not 2 <= cluster < g.clusters + 2:
            return b""
        return _read_at(
            self.target, self.offset + g.data_start + (cluster - 2) * g.cluster_bytes, g.cluster_bytes
        )

    def wipe_tree(
        self,
        directory: PurePosixPath,
        *,
        last: str | None = None,
        step: Callable[[str], None] = lambda _: None,
    ) -> int:
        """Zero every file under `directory` (`last`, a fixed name in it, after the others), sync, then delete
        the tree; returns how many files were zeroed. A cut anywhere leaves a tree that wipes again."""
        files = self.tree_files(directory)
        final = set(self.clusters(directory / last)) if last and self.exists(directory / last) else set()
        self.zero(sorted({c for f in files for c in f} - final))
        step("zeroed")
        if final:
            self.zero(sorted(final))
            step(f"zeroed:{last}")
        self.remove_tree(directory)
        return len(files)

    def remove_tree(self, directory: PurePosixPath) -> None:
        if self.exists(directory):
            self._mtools("mdeltree", f"::{directory}")
