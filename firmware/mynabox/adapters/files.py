"""Durable writes: what returned from here is on the disk, the data and the directory entry naming it.

The one place for "write all, fsync the file, fsync its directory": a file's fsync covers its bytes, not the
entry that names it, so a file created or renamed and only fsynced itself can be missing after a power cut.
Each function fsyncs the directory after it changed an entry. Errors are ``OSError`` as raised; callers say
which file it was in their own words.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may take fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` with `data`: a reader (and a reboot) sees the old file or the new one, never a part.

    Written to ``.<name>.tmp`` beside it with `mode` from the first byte (fchmod: O_CREAT's mode is masked by
    the umask, and a tmp left over by a crash keeps its old mode), fsynced, renamed over `path`, then the
    directory is fsynced so the rename itself survives a power cut."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, *, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Create `path` (never overwriting, never through a symbolic link) with `mode` and, if given, `owner`
    (uid, gid) set before the first byte is written; fsynced with its directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def append(path: Path, data: bytes, *, mode: int) -> None:
    """Append `data` with one ``O_APPEND`` write sequence and fsync it; creating the file fsyncs its
    directory too (only then did an entry change)."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
