"""Durable writes: whole files with the mode asked for, and on the power-cut file system each write survives a
cut with its directory fsynced (the entry naming a new or renamed file is only durable after that)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mynabox.adapters import files
from support.lazyfs import LazyMount, fuse_available

needs_fuse = pytest.mark.skipif(fuse_available() is not None, reason=f"FUSE: {fuse_available()}")


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_write_atomic_replaces_the_file_with_exactly_the_mode_asked(
    tmp_path: Path, umask: Callable[[int], None], mask: int
) -> None:
    umask(mask)
    target = tmp_path / "f"
    target.write_bytes(b"old contents, longer than the new")
    files.write_atomic(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_write_atomic_resets_a_leftover_tmp_and_refuses_a_linked_one(tmp_path: Path) -> None:
    target = tmp_path / "key"
    tmp = tmp_path / ".key.tmp"
    tmp.write_bytes(b"left by a crash")
    tmp.chmod(0o666)
    files.write_atomic(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret" and _mode(target) == 0o600
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"untouched")
    tmp.symlink_to(elsewhere)
    with pytest.raises(OSError):
        files.write_atomic(target, b"other", mode=0o600)
    assert elsewhere.read_bytes() == b"untouched" and target.read_bytes() == b"secret"


def test_write_new_never_overwrites_nor_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "new"
    files.write_new(target, b"first", mode=0o600)
    assert target.read_bytes() == b"first" and _mode(target) == 0o600
    with pytest.raises(FileExistsError):
        files.write_new(target, b"second", mode=0o600)
    assert target.read_bytes() == b"first"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        files.write_new(link, b"x", mode=0o600)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_write_new_sets_the_owner_given(tmp_path: Path) -> None:
    target = tmp_path / "owned"
    files.write_new(target, b"x", mode=0o400, owner=(4321, 4322))
    st = target.stat()
    assert (st.st_uid, st.st_gid, _mode(target)) == (4321, 4322, 0o400)


def test_append_adds_to_the_end(tmp_path: Path) -> None:
    log = tmp_path / "log"
    files.append(log, b"one\n", mode=0o640)
    files.append(log, b"two\n", mode=0o640)
    assert log.read_bytes() == b"one\ntwo\n" and _mode(log) == 0o640


@needs_fuse
def test_each_write_fsyncs_its_directory_and_survives_a_power_cut(tmp_path: Path) -> None:
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    with LazyMount(backing, mnt) as mount:

        def dir_fsyncs(write: Callable[[], None]) -> int:
            before = mount.ask("stats")["dir_fsyncs"]
            write()
            return mount.ask("stats")["dir_fsyncs"] - before

        assert dir_fsyncs(lambda: files.write_atomic(mnt / "atomic", b"a" * 5000, mode=0o600)) == 1
        assert dir_fsyncs(lambda: files.write_atomic(mnt / "atomic", b"b" * 5000, mode=0o600)) == 1
        assert dir_fsyncs(lambda: files.write_new(mnt / "new", b"n" * 3000, mode=0o644)) == 1
        assert dir_fsyncs(lambda: files.append(mnt / "log", b"one\n", mode=0o640)) == 1
        assert dir_fsyncs(lambda: files.append(mnt / "log", b"two\n", mode=0o640)) == 0  # no new entry
        assert mount.ask("stats")["pending_files"] == 0
        stats = mount.power_cut()
    assert stats["dropped_writes"] == 0
    assert (backing / "atomic").read_bytes() == b"b" * 5000
    assert (backing / "new").read_bytes() == b"n" * 3000
    assert (backing / "log").read_bytes() == b"one\ntwo\n"
