"""The receiver's memory: seen message ids, each device's sequence numbers, and the quarantine (SQLite).

Replay rule, per device: H is the highest ``seq`` accepted from it, W = ``REORDER_WINDOW``. A message with
``seq`` > H is new. One with H - W < ``seq`` <= H is new if that number was never accepted (a message that
overtook it: the box retries a refused message after newer ones, and purges some that never arrive), a
duplicate if it was accepted with this message id, refused (``sequence-reused``) with another id. One with
``seq`` <= H - W is refused (``sequence-stale``): a replay, however old, since numbers are forgotten by count,
never by time. Messages without ``seq`` (the format before it) are refused (``no-sequence``).

The store is SQLite, so a restarted receiver keeps seen ids, sequence numbers and the quarantine.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mynabox.gateway.core import ReceiverError

REORDER_WINDOW = 1024  # per device: how far behind its highest number a message may still arrive
QUARANTINE_MAX_ROWS = 10_000
QUARANTINE_MAX_BYTES = 256 * 1024 * 1024
QUARANTINE_KEEP_BYTES = 1024 * 1024  # of each message (the opener refuses larger ones anyway)


@dataclass(frozen=True)
class QuarantineEntry:
    id: int
    received_at: datetime
    topic: str  # as it came: show it through ``visible``
    reason: str
    size: int  # of the message; ``payload`` keeps at most QUARANTINE_KEEP_BYTES of it
    payload: bytes


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen ("
    " message_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seen_us INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS device_seq (device_id TEXT PRIMARY KEY, high INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS seen_seq (device_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " message_id TEXT NOT NULL, PRIMARY KEY (device_id, seq))",
    "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " received_us INTEGER NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL,"
    " payload BLOB NOT NULL)",
)


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


class SeenStore:
    """The receiver's memory in SQLite (WAL, synchronous=FULL): message ids (pruned by age), each device's
    sequence numbers (highest, and those accepted in the reorder window) and the quarantine."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as err:
            raise ReceiverError(f"seen-id store {path}: unusable ({type(err).__name__})") from err
        self._lock = threading.Lock()

    def __contains__(self, message_id: object) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM seen WHERE message_id = ?", (message_id,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        with self._lock:
            count: int = self._db.execute("SELECT count(*) FROM seen").fetchone()[0]
        return count

    def check_sequence(self, device_id: str, seq: int, message_id: str) -> str:
        """``new``, ``duplicate``, ``sequence-reused`` or ``sequence-stale`` (the rule in the module doc)."""
        with self._lock:
            row = self._db.execute("SELECT high FROM device_seq WHERE device_id = ?", (device_id,)).fetchone()
            high: int = 0 if row is None else row[0]
            if seq > high:
                return "new"
            if seq <= high - REORDER_WINDOW:
                return "sequence-stale"
            row = self._db.execute(
                "SELECT message_id FROM seen_seq WHERE device_id = ? AND seq = ?", (device_id, seq)
            ).fetchone()
        if row is None:
            return "new"
        return "duplicate" if row[0] == message_id else "sequence-reused"

    def highest(self, device_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT high FROM device_seq WHERE device_id = ?", (device_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def remember(self, message_id: str, device_id: str, *, now: datetime, seq: int) -> None:
        """One transaction: the id, the number, the new highest, and numbers that fell out of the window."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (message_id, device_id, _us(now)))
                db.execute("INSERT OR IGNORE INTO seen_seq VALUES (?, ?, ?)", (device_id, seq, message_id))
                db.execute(
                    "INSERT INTO device_seq VALUES (?, ?) ON CONFLICT (device_id)"
                    " DO UPDATE SET high = max(high, excluded.high)",
                    (device_id, seq),
                )
                db.execute(
                    "DELETE FROM seen_seq WHERE device_id = ?"
                    " AND seq <= (SELECT high FROM device_seq WHERE device_id = ?) - ?",
                    (device_id, device_id, REORDER_WINDOW),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def forget_device(self, device_id: str) -> int:
        """A re-enrolled box (new SD card: its outbox, and so its numbers, start again at 1)."""
        with self._lock:
            self._db.execute("DELETE FROM seen_seq WHERE device_id = ?", (device_id,))
            return int(self._db.execute("DELETE FROM device_seq WHERE device_id = ?", (device_id,)).rowcount)

    def quarantine(self, topic: str, reason: str, payload: bytes, *, now: datetime) -> int:
        """Keep a refused message for the operator; the oldest go beyond the row and byte bounds."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO quarantine (received_us, topic, reason, size, payload)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (_us(now), topic, reason, len(payload), payload[:QUARANTINE_KEEP_BYTES]),
                )
                db.execute(
                    "DELETE FROM quarantine WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER w AS n,"
                    " sum(length(payload)) OVER w AS total FROM quarantine WINDOW w AS (ORDER BY id DESC))"
                    " WHERE n > ? OR total > ?)",
                    (QUARANTINE_MAX_ROWS, QUARANTINE_MAX_BYTES),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return int(cur.lastrowid or 0)

    def quarantined(self) -> list[QuarantineEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, received_us, topic, reason, size, payload FROM quarantine ORDER BY id"
            ).fetchall()
        return [
            QuarantineEntry(
                r[0], datetime.fromtimestamp(r[1] / 1_000_000, UTC), r[2], r[3], r[4], bytes(r[5])
            )
            for r in rows
        ]

    def prune(self, older_than: timedelta, *, now: datetime) -> int:
        """Forget old ids; keep ``older_than`` ≥ the opener's ``max_age`` so an old id cannot come back."""
        cutoff = int((now - older_than).timestamp() * 1_000_000)
        with self._lock:
            return self._db.execute("DELETE FROM seen WHERE seen_us < ?", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
