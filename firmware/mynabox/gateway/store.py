"""The receiver's memory: seen message ids, each device's sequence numbers, and the quarantine (SQLite).

Replay rule, per device and key: H is the highest ``seq`` accepted from it, W = ``REORDER_WINDOW``. A
message with ``seq`` > H is new. One with H - W < ``seq`` <= H is new if that number was never accepted (a
message that overtook it: the box retries a refused message after newer ones, and purges some that never
arrive), a duplicate if it was accepted with this message id, refused (``sequence-reused``) with another id.
One with ``seq`` <= H - W is refused (``sequence-stale``): a replay, however old, since numbers are forgotten
by count, never by time. Messages without ``seq`` (the format before it) are refused (``no-sequence``).

Numbers belong to the device key that signed (its RFC 7638 thumbprint, ``Opened.key``). A re-enrolled box
(new SD card: its outbox, and so its numbers, start again at 1) has a new key: its first accepted message
retires the old key, whose numbers could not tell its old life's messages from new ones, and starts the
numbers again. A retired key's messages are refused (``key-retired``) even if its public key is installed
again. ``forget_device`` retires a device's key by hand (a box lost or taken out of service). Numbers kept
before keys were recorded (key NULL) belong to the first key that signs an accepted message.

The store is SQLite: a restarted receiver keeps seen ids, sequence numbers, retired keys and the quarantine.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mynabox.gateway.core import ReceiverError
from mynabox.record import record

REORDER_WINDOW = 1024  # per device: how far behind its highest number a message may still arrive
QUARANTINE_MAX_ROWS = 10_000
QUARANTINE_MAX_BYTES = 256 * 1024 * 1024
QUARANTINE_KEEP_BYTES = 1024 * 1024  # of each message (the opener refuses larger ones anyway)


@record
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
    "CREATE TABLE IF NOT EXISTS device_seq (device_id TEXT PRIMARY KEY, high INTEGER NOT NULL, key TEXT)",
    "CREATE TABLE IF NOT EXISTS retired_key (key TEXT PRIMARY KEY, device_id TEXT NOT NULL,"
    " retired_us INTEGER NOT NULL)",
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
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(device_seq)")}
            if "key" not in columns:  # a store from before keys were recorded: its numbers stay (NULL key)
                self._db.execute("ALTER TABLE device_seq ADD COLUMN key TEXT")
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

    def check_sequence(self, device_id: str, seq: int, message_id: str, key: str) -> str:
        """``new``, ``duplicate``, ``sequence-reused``, ``sequence-stale`` or ``key-retired`` (module doc)."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM retired_key WHERE key = ?", (key,)).fetchone():
                return "key-retired"
            row = self._db.execute(
                "SELECT high, key FROM device_seq WHERE device_id = ?", (device_id,)
            ).fetchone()
            if row is None or row[1] not in (None, key):
                return "new"  # the first message of this device, or of its new key: numbers start again
            high: int = row[0]
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

    def remember(self, message_id: str, device_id: str, *, now: datetime, seq: int, key: str) -> None:
        """One transaction: the id, the number, the new highest, numbers that fell out of the window, and
        (the device's first message under a new key) the old key retired and its numbers dropped."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT key FROM device_seq WHERE device_id = ?", (device_id,)).fetchone()
                if row is not None and row[0] not in (None, key):
                    db.execute(
                        "INSERT OR IGNORE INTO retired_key VALUES (?, ?, ?)", (row[0], device_id, _us(now))
                    )
                    db.execute("DELETE FROM seen_seq WHERE device_id = ?", (device_id,))
                    db.execute("DELETE FROM device_seq WHERE device_id = ?", (device_id,))
                db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (message_id, device_id, _us(now)))
                db.execute("INSERT OR IGNORE INTO seen_seq VALUES (?, ?, ?)", (device_id, seq, message_id))
                db.execute(
                    "INSERT INTO device_seq VALUES (?, ?, ?) ON CONFLICT (device_id)"
                    " DO UPDATE SET high = max(high, excluded.high), key = excluded.key",
                    (device_id, seq, key),
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

    def forget_device(self, device_id: str, *, now: datetime) -> str | None:
        """Retire the key the device's numbers were kept for (a box lost or out of service): every message
        it signs is refused from now on. Returns that key's thumbprint, None when none is recorded."""
        with self._lock:
            row = self._db.execute("SELECT key FROM device_seq WHERE device_id = ?", (device_id,)).fetchone()
            if row is None or row[0] is None:
                return None
            self._db.execute(
                "INSERT OR IGNORE INTO retired_key VALUES (?, ?, ?)", (row[0], device_id, _us(now))
            )
            return str(row[0])

    def retired(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM retired_key WHERE key = ?", (key,)).fetchone() is not None

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
