"""The power-cut file system itself, and our two durable stores on it.

What an fsync covered survives a cut, what it did not is gone (or torn); SQLite with synchronous=OFF loses
a commit (so the fault layer has teeth), the outbox and the audit log keep every call that returned.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.outbox import Outbox, SealedBytes
from mynabox.payload.audit import AuditRecord
from mynabox.payload.keys import Secret
from mynabox.vocab import ConsentMode, Outcome
from support.lazyfs import LazyMount, LazyStore, fuse_available

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
needs_fuse = pytest.mark.skipif(fuse_available() is not None, reason=f"FUSE: {fuse_available()}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(backing, mountpoint); every mount a test makes is unmounted by LazyMount's exit."""
    yield tmp_path / "disk", tmp_path / "mnt"


def test_the_store_overlays_unsynced_writes_and_drops_them(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    store = LazyStore(tmp_path)
    store.write("/f", b"ab", 2)
    store.write("/f", b"XYZ", 9)
    assert store.overlay("/f", bytearray(b"0123456789"), 0, 100) == b"01ab45678XYZ"
    assert store.overlay("/f", bytearray(b"345"), 3, 3) == b"b45"
    stats = store.cut("drop")
    assert (tmp_path / "f").read_bytes() == b"0123456789"
    assert stats["dropped_writes"] == 2 and stats["dropped_bytes"] == 5


def test_a_torn_cut_lands_a_subset_of_sectors(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    store = LazyStore(tmp_path)
    store.write("/f", b"A" * 512 * 8, 0)
    store.cut("torn", seed=7)
    data = (tmp_path / "f").read_bytes()
    landed = {i for i in range(8) if data[i * 512 : (i + 1) * 512] == b"A" * 512}
    assert 0 < len(landed) < 8  # some sectors reached the disk, some did not


@needs_fuse
def test_fsync_is_the_line(disk: tuple[Path, Path]) -> None:
    backing, mnt = disk
    with LazyMount(backing, mnt) as mount:
        with (mnt / "file").open("wb") as f:
            f.write(b"kept\n")
            f.flush()
            os.fsync(f.fileno())
            f.write(b"lost\n")
        fd = os.open(mnt / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, b"one\n")
        os.fsync(fd)
        os.write(fd, b"two\n")
        os.close(fd)
        assert (mnt / "file").read_bytes() == b"kept\nlost\n"  # before the cut, reads see everything
        assert (mnt / "log").read_bytes() == b"one\ntwo\n"
        stats = mount.power_cut()
    assert stats["dropped_writes"] == 2
    assert (backing / "file").read_bytes() == b"kept\n"
    assert (backing / "log").read_bytes() == b"one\n"


@needs_fuse
def test_sqlite_without_sync_loses_a_commit_and_with_full_keeps_it(disk: tuple[Path, Path]) -> None:
    backing, mnt = disk
    with LazyMount(backing, mnt) as mount:
        for name, sync in (("off.db", "OFF"), ("full.db", "FULL")):
            db = sqlite3.connect(mnt / name, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={sync}")
            db.execute("CREATE TABLE t (x)")
            db.execute("INSERT INTO t VALUES (1)")
            db.close()
        mount.power_cut()
    with LazyMount(backing, mnt):
        with sqlite3.connect(mnt / "full.db") as db:
            assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db = sqlite3.connect(mnt / "off.db")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            db.execute("SELECT x FROM t")
        db.close()


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        NOW, "amb-1", None, None, ConsentMode.ORAL_CONSENT, Outcome.DELIVERED_SUMMARY, f"{i:016x}", True
    )


@needs_fuse
@pytest.mark.parametrize("seed", range(6))
def test_outbox_and_audit_keep_what_returned_through_torn_cuts(disk: tuple[Path, Path], seed: int) -> None:
    backing, mnt = disk
    key = Secret(b"k" * 32)
    with LazyMount(backing, mnt) as mount:
        outbox = Outbox(mnt / "outbox.db")
        audit = AuditLog(mnt / "audit.jsonl", key=key)
        for i in range(12):
            outbox.put("t", f"m{i}", SealedBytes(os.urandom(400 + 97 * i)), now=NOW)
            audit.append(_record(i))
        for i in range(0, 12, 3):
            outbox.ack(f"m{i}")
        # No close: the power goes with the files open, mid-life.
        stats = mount.power_cut("torn", seed=seed)
    assert stats["fsyncs"] > 0
    with LazyMount(backing, mnt):
        with Outbox(mnt / "outbox.db") as outbox:
            ids = {item.message_id for item in outbox.next_batch(100)}
        assert ids == {f"m{i}" for i in range(12) if i % 3}
        audit = AuditLog(mnt / "audit.jsonl", key=key)
        assert len(audit) == 12 and audit.verify().ok
