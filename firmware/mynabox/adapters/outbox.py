"""The durable outbox: sealed messages wait here (SQLite) until the broker acknowledges them.

Durability: WAL with ``synchronous=FULL``. In WAL mode FULL fsyncs the WAL at every commit, so a ``put`` that
returned survives a power cut, not only a crash (NORMAL may lose the last commits on power loss;
platform-notes.md measured ≈ 3.8k commits/s with FULL against ≈ 27k/s with NORMAL, far more than a box that
reads a card a minute needs). A record is deleted by ``ack`` (its PUBACK arrived) or ``purge`` (retention),
never otherwise, so the worst a crash does is resend a message the receiver then drops by its id.

Only sealed bytes go in (``SealedBytes``): the file never holds patient data in plaintext.

Sequence: ``put_sealed`` seals each message with the next outbox ``seq`` inside the transaction that stores
it. ``AUTOINCREMENT`` keeps the highest number ever used (``sqlite_sequence``) even after every row is acked,
so the numbers a box signs only grow over its life; a crash before the commit stored nothing and sent
nothing, so the number it had drawn is free to be drawn again. The link sends in ``seq`` order.

Format across updates: the state partition is shared by both root slots, so after a rollback the previous
firmware opens what the newer one wrote. The file keeps its schema (``user_version``) and, in
``outbox_format``, the oldest schema whose reader can still use it (a newer schema that only adds columns
with defaults keeps it; the statements here name their columns). A reader opens a newer file when it is
not too old for it, and refuses it otherwise (``OutboxTooNewError``); ``mynabox update install`` reads the new
slot's ``data/storage-formats.json`` and refuses, before the switch, a firmware whose outbox this one could
not read after a rollback (mynabox.update.formats).

Threads: one connection guarded by a lock (``check_same_thread=False``). The daemon's loop puts, the MQTT
link's worker thread reads and acks; each call is one short transaction, so the lock is never held long.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NewType

from mynabox.payload.seal import Sealed
from mynabox.record import record

SCHEMA_VERSION = 1
OLDEST_READER = 1  # the oldest SCHEMA_VERSION that can read and write what this one writes

SealedBytes = NewType("SealedBytes", bytes)
"""Bytes that came out of ``mynabox.payload`` sealing (a JWE). Nothing else may be queued."""

_SCHEMA = """CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT    NOT NULL UNIQUE,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_us INTEGER NOT NULL
)"""
_FORMAT = "CREATE TABLE outbox_format (oldest_reader INTEGER NOT NULL)"


class OutboxError(Exception):
    """The outbox could not do what was asked (disk full, I/O error, closed)."""


class OutboxCorruptError(OutboxError):
    """The database file is unreadable or fails its integrity check; ``quarantine`` moves it aside."""


class OutboxTooNewError(OutboxError):
    """A newer firmware wrote the outbox in a schema this one cannot read (kept as it is, never changed)."""


class DuplicateMessageError(OutboxError):
    """A message with this id is already queued."""


@record
class OutboxItem:
    seq: int
    message_id: str
    topic: str
    payload: SealedBytes = field(repr=False)
    created_at: datetime


def _to_us(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(when.timestamp() * 1_000_000)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


class Outbox:
    def __init__(self, path: Path, *, check: bool = True) -> None:
        """Open (or create) the outbox; ``check`` runs ``PRAGMA quick_check`` (cheap: the outbox is small)."""
        self._path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5)
        except sqlite3.Error as err:
            raise OutboxCorruptError(f"outbox {self._path}: cannot open ({type(err).__name__})") from err
        try:
            self._setup(check)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise OutboxCorruptError(f"outbox {self._path}: unreadable ({_describe(err)})") from err
        except OutboxError:
            self._db.close()
            raise

    def _setup(self, check: bool) -> None:
        db = self._db
        if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise OutboxError(f"outbox {self._path}: WAL journal not available")
        db.execute("PRAGMA synchronous=FULL")
        if check:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise OutboxCorruptError(f"outbox {self._path}: integrity check failed")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise OutboxCorruptError(f"outbox {self._path}: tables present but no schema version")
                db.execute(_SCHEMA)
                db.execute(_FORMAT)
                db.execute("INSERT INTO outbox_format (oldest_reader) VALUES (?)", (OLDEST_READER,))
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # in the same transaction as the table
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        elif version > SCHEMA_VERSION:
            oldest = self._oldest_reader(version)
            if oldest > SCHEMA_VERSION:
                raise OutboxTooNewError(
                    f"outbox {self._path}: schema {version} needs a reader of schema {oldest} or newer,"
                    f" this firmware reads {SCHEMA_VERSION}"
                )
        elif version != SCHEMA_VERSION:
            raise OutboxError(f"outbox {self._path}: schema version {version} is not {SCHEMA_VERSION}")

    def _oldest_reader(self, version: int) -> int:
        """What a newer file says about its readers; a file without the table is read by its own schema."""
        db = self._db
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_format'").fetchone():
            return version
        row = db.execute("SELECT min(oldest_reader) FROM outbox_format").fetchone()
        return row[0] if row and isinstance(row[0], int) else version

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"Outbox({str(self._path)!r})"

    def put(self, topic: str, message_id: str, payload: SealedBytes, *, now: datetime) -> int:
        """Queue one sealed message; returns its sequence number once the commit is on disk."""
        if not isinstance(payload, bytes) or not payload:
            raise TypeError("payload must be non-empty sealed bytes")
        created = _to_us(now)
        with self._locked("put"):
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (message_id, topic, payload, created_us) VALUES (?, ?, ?, ?)",
                    (message_id, topic, payload, created),
                )
            except sqlite3.IntegrityError as err:
                raise DuplicateMessageError("a message with this id is already queued") from err
            seq = cur.lastrowid
        if seq is None:
            raise OutboxError("insert returned no row id")
        return seq

    def put_sealed(self, topic: str, seal: Callable[[int], Sealed], *, now: datetime) -> Sealed:
        """Seal with the next sequence number (``seal(seq)``) and queue it, in one transaction."""
        created = _to_us(now)
        with self._locked("put"):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
                seq = (row[0] if row else 0) + 1
                sealed = seal(seq)
                if sealed.seq != seq or not sealed.token:
                    raise TypeError("seal must return a message sealed with the sequence number it was given")
                db.execute(
                    "INSERT INTO outbox (seq, message_id, topic, payload, created_us) VALUES (?, ?, ?, ?, ?)",
                    (seq, sealed.message_id, topic, sealed.token, created),
                )
                db.execute("COMMIT")
            except sqlite3.IntegrityError as err:
                db.execute("ROLLBACK")
                raise DuplicateMessageError("a message with this id is already queued") from err
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return sealed

    def next_batch(self, limit: int, *, after: int = 0) -> list[OutboxItem]:
        """The oldest ``limit`` messages with a sequence number above ``after``, in order."""
        with self._locked("read"):
            rows = self._db.execute(
                "SELECT seq, message_id, topic, payload, created_us FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, max(0, limit)),
            ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], SealedBytes(bytes(r[3])), _from_us(r[4])) for r in rows]

    def ack(self, message_id: str) -> bool:
        """Delete a delivered message; False if it was not there (already acked or purged)."""
        with self._locked("ack"):
            cur = self._db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
        return cur.rowcount > 0

    def depth(self) -> int:
        with self._locked("read"):
            count: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return count

    def oldest_age(self, now: datetime) -> timedelta | None:
        with self._locked("read"):
            oldest = self._db.execute("SELECT min(created_us) FROM outbox").fetchone()[0]
        return None if oldest is None else timedelta(microseconds=_to_us(now) - oldest)

    def purge(self, older_than: timedelta, now: datetime) -> list[str]:
        """Delete messages queued before ``now - older_than``; returns their ids (one audit record each)."""
        cutoff = _to_us(now - older_than)
        with self._locked("purge"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    r[0]
                    for r in self._db.execute(
                        "SELECT message_id FROM outbox WHERE created_us < ? ORDER BY seq", (cutoff,)
                    )
                ]
                self._db.execute("DELETE FROM outbox WHERE created_us < ?", (cutoff,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ids

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _locked(self, what: str) -> _Guard:
        return _Guard(self, what)


class _Guard:
    """Holds the lock for one statement and turns sqlite3 errors into ours."""

    def __init__(self, outbox: Outbox, what: str) -> None:
        self._outbox, self._what = outbox, what

    def __enter__(self) -> None:
        self._outbox._lock.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._outbox._lock.release()
        if isinstance(exc, sqlite3.ProgrammingError):
            raise OutboxError(f"outbox {self._what}: {_describe(exc)}") from exc
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
            kind = OutboxError if isinstance(exc, sqlite3.OperationalError) else OutboxCorruptError
            raise kind(f"outbox {self._what} failed ({_describe(exc)})") from exc


def _describe(err: sqlite3.Error) -> str:
    # SQLite's messages are fixed strings ("database or disk is full", "file is not a database"): no data.
    return getattr(err, "sqlite_errorname", None) or str(err)


def quarantine(path: Path, *, now: datetime) -> Path:
    """Move an unreadable outbox (and its -wal/-shm) aside, kept for analysis, so the box can start afresh."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.rename(target.with_name(target.name + suffix))
    except OSError as err:
        raise OutboxError(f"cannot move {path} aside ({err.strerror or type(err).__name__})") from err
    return target
