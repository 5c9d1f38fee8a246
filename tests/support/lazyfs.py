"""A power-cut file system for tests, after LazyFS: writes stay in memory until their file is fsynced.

`kill -9` proves a process keeps its promises across a crash, not across a power cut: the page cache still
reaches the disk after a crash. Here every `write` is held in memory (per file, in order) and reaches the
backing directory only when that file is fsynced (`fsync`/`fdatasync`, as SQLite and our audit log do).
A power cut (`LazyMount.power_cut`) throws the unsynced writes away and unmounts; mounting the backing
directory again is the reboot. Metadata (create, rename, unlink, truncate, mkdir) goes to the backing
directory at once — LazyFS's default too; SQLite does not rely on a directory fsync in WAL mode, our audit
log fsyncs its directory anyway. Directory fsyncs are counted (`dir_fsyncs` in the stats), so a test can
see that a writer makes them.

Modes of a cut: "drop" loses every unsynced write; "torn" keeps a seeded random subset of the unsynced
writes, cut into 512-byte sectors, as a disk that reorders and tears writes between barriers would (WAL
frames carry checksums for exactly this).

Runs as `python tests/support/lazyfs.py BACKING MOUNTPOINT CONTROL_SOCKET` (FUSE through mfusepy, single
threaded); the test talks to it on the control socket: `stats`, `cut drop`, `cut torn SEED`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

SECTOR = 512


@dataclass
class _Pending:
    """Unsynced writes of one file, in order, and the size the file has with them."""

    writes: list[tuple[int, bytes]] = field(default_factory=list)
    size: int = 0


class LazyStore:
    """The file system's state without FUSE: what is durable (the backing directory) and what is not."""

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.lock = threading.Lock()
        self.pending: dict[str, _Pending] = {}
        self.dead = False  # after a cut every operation fails, as on a machine without power
        self.stats = {
            "writes": 0,
            "synced_writes": 0,
            "fsyncs": 0,
            "dir_fsyncs": 0,
            "dropped_writes": 0,
            "dropped_bytes": 0,
        }

    def real(self, path: str) -> str:
        return str(self.backing / path.lstrip("/"))

    def size(self, path: str) -> int | None:
        entry = self.pending.get(path)
        return None if entry is None else entry.size

    def write(self, path: str, data: bytes, offset: int) -> None:
        entry = self.pending.get(path)
        if entry is None:
            entry = self.pending[path] = _Pending(size=os.stat(self.real(path)).st_size)
        entry.writes.append((offset, bytes(data)))
        entry.size = max(entry.size, offset + len(data))
        self.stats["writes"] += 1

    def overlay(self, path: str, data: bytearray, offset: int, size: int) -> bytes:
        """Backing bytes at [offset, offset+size) with the unsynced writes laid over them, in order."""
        entry = self.pending.get(path)
        if entry is None:
            return bytes(data)
        end = min(offset + size, entry.size)
        if end <= offset:
            return b""
        data.extend(b"\0" * max(0, end - offset - len(data)))
        del data[end - offset :]
        for at, chunk in entry.writes:
            lo, hi = max(at, offset), min(at + len(chunk), end)
            if lo < hi:
                data[lo - offset : hi - offset] = chunk[lo - at : hi - at]
        return bytes(data)

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self.real(path), length)
        entry = self.pending.get(path)
        if entry is not None:
            entry.writes = [(at, chunk[: max(0, length - at)]) for at, chunk in entry.writes if at < length]
            entry.size = length

    def sync(self, path: str) -> None:
        entry = self.pending.pop(path, None)
        self.stats["fsyncs"] += 1
        if entry is None:
            return
        fd = os.open(self.real(path), os.O_WRONLY)
        try:
            for at, chunk in entry.writes:
                os.pwrite(fd, chunk, at)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.stats["synced_writes"] += len(entry.writes)

    def rename(self, old: str, new: str) -> None:
        os.rename(self.real(old), self.real(new))
        self.pending.pop(new, None)
        if old in self.pending:
            self.pending[new] = self.pending.pop(old)

    def forget(self, path: str) -> None:
        self.pending.pop(path, None)

    def cut(self, mode: str, seed: int = 0) -> dict[str, int]:
        """The power goes: unsynced writes are lost ("drop") or land in part, torn ("torn")."""
        rng = random.Random(seed)
        self.dead = True
        for path, entry in self.pending.items():
            sectors = [
                (at + i, chunk[i : i + SECTOR])
                for at, chunk in entry.writes
                for i in range(0, len(chunk), SECTOR)
            ]
            kept = [s for s in sectors if mode == "torn" and rng.random() < 0.5]
            self.stats["dropped_writes"] += len(entry.writes)
            self.stats["dropped_bytes"] += sum(len(c) for _, c in sectors) - sum(len(c) for _, c in kept)
            if kept and os.path.exists(self.real(path)):
                fd = os.open(self.real(path), os.O_WRONLY)
                try:
                    for at, chunk in kept:
                        os.pwrite(fd, chunk, at)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self.pending.clear()
        return dict(self.stats)


def _operations(store: LazyStore) -> Any:
    """The FUSE callbacks (mfusepy's fusepy-style API) over a LazyStore; imported late: tests only."""
    from mfusepy import FuseOSError, Operations

    def guard() -> None:
        if store.dead:
            raise FuseOSError(errno.EIO)

    class Ops(Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            guard()
            st = os.lstat(store.real(path))
            attrs = {key: getattr(st, key) for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size")}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            with store.lock:
                size = store.size(path)
            if size is not None:
                attrs["st_size"] = size
            return attrs

        def readdir(self, path: str, fh: int) -> list[str]:
            guard()
            return [".", "..", *os.listdir(store.real(path))]

        def access(self, path: str, amode: int) -> int:
            guard()
            if not os.access(store.real(path), amode):
                raise FuseOSError(errno.EACCES)
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            guard()
            os.mkdir(store.real(path), mode)
            return 0

        def rmdir(self, path: str) -> int:
            guard()
            os.rmdir(store.real(path))
            return 0

        def chmod(self, path: str, mode: int) -> int:
            guard()
            os.chmod(store.real(path), mode)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            guard()
            os.chown(store.real(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            guard()
            if times is None:
                os.utime(store.real(path))
            else:
                os.utime(store.real(path), ns=times)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            guard()
            sv = os.statvfs(store.real(path))
            keys = (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_frsize",
            )
            return {key: getattr(sv, key) for key in keys} | {"f_namemax": sv.f_namemax}

        def open(self, path: str, flags: int) -> int:
            guard()
            # The real descriptor only serves reads; writes go to the store. O_APPEND offsets come from
            # the kernel, which knows the size from getattr.
            return os.open(store.real(path), os.O_RDONLY)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            guard()
            os.close(os.open(store.real(path), os.O_WRONLY | os.O_CREAT, mode))
            return os.open(store.real(path), os.O_RDONLY)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            guard()
            with store.lock:
                data = bytearray(os.pread(fh, size, offset))
                return store.overlay(path, data, offset, size)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            guard()
            with store.lock:
                store.write(path, data, offset)
            return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            guard()
            with store.lock:
                store.truncate(path, length)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            guard()
            with store.lock:
                store.sync(path)
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            guard()
            with store.lock:
                store.stats["dir_fsyncs"] += 1  # counted only: entries are durable at once here
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0  # close() promises nothing about durability

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def unlink(self, path: str) -> int:
            guard()
            with store.lock:
                os.unlink(store.real(path))
                store.forget(path)
            return 0

        def rename(self, old: str, new: str) -> int:
            guard()
            with store.lock:
                store.rename(old, new)
            return 0

    return Ops()


def _control(store: LazyStore, sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            words = conn.recv(256).decode().split()
            with store.lock:
                if words[:1] == ["cut"]:
                    answer = store.cut(words[1], int(words[2]) if len(words) > 2 else 0)
                else:
                    answer = dict(store.stats) | {"pending_files": len(store.pending)}
            conn.sendall(json.dumps(answer).encode())


def serve(backing: Path, mountpoint: Path, control: Path) -> None:
    from mfusepy import FUSE

    store = LazyStore(backing)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(control))
    sock.listen(4)
    threading.Thread(target=_control, args=(store, sock), daemon=True).start()
    FUSE(
        _operations(store), str(mountpoint), foreground=True, nothreads=True, attr_timeout=0, entry_timeout=0
    )


class LazyMount:
    """Mount a LazyFS over `backing` at `mountpoint` in a child process; unmounted on exit, also on errors."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self._dir = Path(tempfile.mkdtemp(prefix="mynabox-lazyfs-"))
        self._control = self._dir / "control.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = self._dir / "lazyfs.log"

    def __enter__(self) -> LazyMount:
        self.mount()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount()
        with contextlib.suppress(OSError):
            for path in self._dir.iterdir():
                path.unlink()
            self._dir.rmdir()

    def mount(self, timeout: float = 10.0) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self._control.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),  # a script: the child needs no sys.path for tests/
                    str(self.backing),
                    str(self.mountpoint),
                    str(self._control),
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint) or not self._control.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                raise RuntimeError(f"lazyfs did not mount: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.01)

    def ask(self, command: str) -> dict[str, int]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self._control))
            sock.sendall(command.encode())
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        answer: dict[str, int] = json.loads(reply)
        return answer

    def power_cut(self, mode: str = "drop", seed: int = 0) -> dict[str, int]:
        """Lose what was not fsynced (kill the writers first), then unmount: the next mount is the reboot.

        The file system process is killed, not asked to finish: files still open on the old mount fail."""
        stats = self.ask(f"cut {mode} {seed}")
        self.unmount(wait=0.0)
        return stats

    def unmount(self, wait: float = 5.0) -> None:
        if self._proc is None:
            return
        # Not guarded by os.path.ismount: after a cut the mount answers EIO, and ismount says False.
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False, capture_output=True)
        try:
            self._proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:  # files still open on the detached mount
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None


def fuse_available() -> str | None:
    """Why FUSE cannot be used here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as err:
        return f"mfusepy unusable: {err}"
    return None


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
