"""The SQLite outbox: ordering, ack, purge, reopen, corruption, and kill -9 at random points."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mynabox.adapters.outbox import (
    DuplicateMessageError,
    Outbox,
    OutboxCorruptError,
    OutboxError,
    OutboxTooNewError,
    SealedBytes,
    quarantine,
)

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def mid(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    try:
        yield box
    finally:
        box.close()


def test_put_then_batch_in_order_and_ack_deletes(outbox: Outbox) -> None:
    for n in range(5):
        outbox.put("mynabox/a/summary", mid(n), SealedBytes(b"sealed-%d" % n), now=T0 + timedelta(seconds=n))
    batch = outbox.next_batch(3)
    assert [i.message_id for i in batch] == [mid(0), mid(1), mid(2)]
    assert batch[0].payload == b"sealed-0" and batch[0].topic == "mynabox/a/summary"
    assert batch[0].created_at == T0
    assert [i.message_id for i in outbox.next_batch(10, after=batch[-1].seq)] == [mid(3), mid(4)]
    assert outbox.ack(mid(1)) is True
    assert outbox.ack(mid(1)) is False
    assert outbox.depth() == 4
    assert [i.message_id for i in outbox.next_batch(10)] == [mid(0), mid(2), mid(3), mid(4)]


def test_duplicate_id_is_a_typed_error(outbox: Outbox) -> None:
    outbox.put("t", mid(1), SealedBytes(b"x"), now=T0)
    with pytest.raises(DuplicateMessageError):
        outbox.put("t", mid(1), SealedBytes(b"y"), now=T0)
    with pytest.raises(TypeError):
        outbox.put("t", mid(2), b"", now=T0)  # type: ignore[arg-type]


def test_oldest_age_and_purge_return_ids(outbox: Outbox) -> None:
    assert outbox.oldest_age(T0) is None
    for n in range(4):
        outbox.put("t", mid(n), SealedBytes(b"x"), now=T0 + timedelta(hours=n))
    assert outbox.oldest_age(T0 + timedelta(hours=5)) == timedelta(hours=5)
    purged = outbox.purge(timedelta(hours=3), T0 + timedelta(hours=5))  # cutoff T0+2h: 0 and 1 go
    assert purged == [mid(0), mid(1)]
    assert outbox.depth() == 2
    assert outbox.purge(timedelta(hours=3), T0 + timedelta(hours=5)) == []


def test_reopen_keeps_records_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        seq = box.put("t", mid(7), SealedBytes(b"sealed"), now=T0)
    with Outbox(path) as box:
        assert [(i.seq, i.message_id) for i in box.next_batch(5)] == [(seq, mid(7))]
        assert box.put("t", mid(8), SealedBytes(b"s"), now=T0) > seq  # AUTOINCREMENT: never reused
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        db.close()


def test_closed_outbox_raises_typed_error(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.close()
    with pytest.raises(OutboxError):
        box.depth()


def test_garbage_file_is_corrupt_and_quarantine_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(OutboxCorruptError):
        Outbox(path)
    moved = quarantine(path, now=T0)
    assert moved.exists() and not path.exists()
    with Outbox(path) as box:  # a fresh one starts
        assert box.depth() == 0


def test_damaged_page_fails_the_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        for n in range(200):
            box.put("t", mid(n), SealedBytes(os.urandom(300)), now=T0)
    # Fold the WAL into the main file, then overwrite a page in the middle of the table's b-tree.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with path.open("r+b") as f:
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)
    with pytest.raises(OutboxCorruptError):
        box = Outbox(path)
        box.close()


def newer_file(path: Path, *, oldest_reader: int | None) -> bytes:
    """An outbox as a newer firmware would leave it after a rollback: schema 2, a column added with a
    default, one queued message, and (unless None) its outbox_format row. Returns the file's bytes."""
    with Outbox(path) as box:
        box.put("t/summary", mid(1), SealedBytes(b"sealed-1"), now=T0)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
    if oldest_reader is None:
        db.execute("DROP TABLE outbox_format")
    else:
        db.execute("UPDATE outbox_format SET oldest_reader = ?", (oldest_reader,))
    db.execute("PRAGMA user_version=2")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.read_bytes()


def test_a_newer_outbox_that_this_version_may_read_is_used_after_a_rollback(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    newer_file(path, oldest_reader=1)
    with Outbox(path) as box:
        assert [item.message_id for item in box.next_batch(10)] == [mid(1)]
        box.put("t/summary", mid(2), SealedBytes(b"sealed-2"), now=T0)  # the new column takes its default
        assert box.ack(mid(1))
        assert [item.seq for item in box.next_batch(10)] == [2]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # never rewritten to the older schema
    assert db.execute("SELECT priority FROM outbox").fetchall() == [(0,)]
    db.close()


@pytest.mark.parametrize("oldest_reader", [2, None], ids=["needs-schema-2", "no-format-table"])
def test_a_newer_outbox_this_version_cannot_read_is_refused_and_left_as_it_is(
    tmp_path: Path, oldest_reader: int | None
) -> None:
    path = tmp_path / "o.sqlite3"
    before = newer_file(path, oldest_reader=oldest_reader)
    with pytest.raises(OutboxTooNewError, match="needs a reader of schema 2 or newer"):
        Outbox(path)
    assert path.read_bytes() == before


def test_an_unknown_older_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=-1")
    db.close()
    with pytest.raises(OutboxError, match="schema version -1 is not 1"):
        Outbox(path)


def test_the_declared_storage_formats_are_the_outboxs_own() -> None:
    """data/storage-formats.json is what `update install` reads from a new slot: it must say what this
    firmware's outbox is."""
    from importlib.resources import files

    from mynabox.adapters import outbox
    from mynabox.update import formats

    text = files("mynabox").joinpath(formats.PATH.removeprefix("mynabox/")).read_text()
    declared = formats.parse(text)
    assert (declared.schema, declared.oldest_reader) == (outbox.SCHEMA_VERSION, outbox.OLDEST_READER)


# --- kill -9 -------------------------------------------------------------------------------------------

# The child puts and acks forever, printing a line only after each call returned (= committed).
_CHILD = r"""
import sys
from datetime import UTC, datetime
from mynabox.adapters.outbox import Outbox, SealedBytes
box = Outbox(sys.argv[1])
start = int(sys.argv[2])
n = start
while True:
    m = f"{n:032x}"
    box.put("mynabox/d/summary", m, SealedBytes(b"sealed-" + m.encode() * 8), now=datetime.now(UTC))
    print("P", m, flush=True)
    if n % 3 != 2:
        old = f"{n - 1:032x}" if n > start else None
        if old and box.ack(old):
            print("A", old, flush=True)
    n += 1
"""


@pytest.mark.stack
@pytest.mark.slow
def test_kill_minus_9_at_random_points_loses_nothing_committed(tmp_path: Path) -> None:
    rng = random.Random(20260401)
    path = tmp_path / "outbox.sqlite3"
    put: set[str] = set()
    acked: set[str] = set()
    start = 0
    for _run in range(60):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(start)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        try:
            for _ in range(rng.randint(1, 40)):
                line = child.stdout.readline()
                if not line:
                    break
                op, message = line.split()
                (put if op == "P" else acked).add(message)
            time.sleep(rng.random() * 0.003)  # land anywhere in the next put/ack, not always at its start
            os.kill(child.pid, signal.SIGKILL)
            rest = child.stdout.read()  # lines already written before the kill were committed too
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdout.close()
        for line in rest.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # killed mid-print: the call committed but we claim nothing for it
            op, message = line.split()
            (put if op == "P" else acked).add(message)
        with Outbox(path) as box:  # opens with quick_check
            present = {i.message_id for i in box.next_batch(100_000)}
            start = max(int(m, 16) for m in present | put) + 1 if present | put else 0
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            db.close()
        # The one record whose ack may have committed without being reported: the one before the last put.
        in_doubt = {f"{max(int(m, 16) for m in put) - 1:032x}"} if put else set()
        assert (put - acked) - present <= in_doubt, "a committed record was lost"
        assert not (acked & present), "an acked record came back"
        acked |= (put - acked) - present
    assert len(put) > 100 and acked
