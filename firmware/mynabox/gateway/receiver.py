"""The reference gateway receiver: what an integrator reads to build the real gateway side.

For every message on ``mynabox/+/summary`` and ``mynabox/+/audit``:
1. the topic must be ``mynabox/<device>/<summary|audit>``;
2. the envelope must open (``Opener``: known device key, signature, decryption, age) - one opaque error, whose
   reason code goes to the log;
3. the device in the topic (the broker's ACL ties it to the client certificate's CN) must be the device that
   signed, and the kind must belong on that topic;
4. a message id already seen is a duplicate (at-least-once delivery makes them): dropped, counted;
5. the device's signed sequence number must pass the replay rule (below);
6. otherwise it is handed to the sink (print, write JSON) and only then remembered as seen and acknowledged.

Replay rule, per device: H is the highest ``seq`` accepted from it, W = ``REORDER_WINDOW``. A message with
``seq`` > H is new. One with H - W < ``seq`` <= H is new if that number was never accepted (a message that
overtook it: the box retries a refused message after newer ones, and purges some that never arrive), a
duplicate if it was accepted with this message id, refused (``sequence-reused``) with another id. One with
``seq`` <= H - W is refused (``sequence-stale``): a replay, however old, since numbers are forgotten by count,
never by time. Messages without ``seq`` (the format before it) are refused (``no-sequence``).

No message stops the receiver: every refusal (any exception while deciding, or a sink failure that is not
the gateway's own I/O) is acknowledged, counted and *quarantined*: the sealed bytes, the topic and the reason
stay in the store's ``quarantine`` table for the operator (``mynabox receive --quarantined`` lists them).
The store is SQLite, so a restarted receiver keeps seen ids, sequence numbers and the quarantine; a crash
between the sink and the commit shows a message twice (the JSON file is named by message id, so it is
rewritten, not doubled).
The MQTT session is persistent (fixed client id, ``clean_start`` false, a session expiry), and the broker must
run with persistence, so nothing is missed while the receiver is down. PUBACKs are sent by hand after the
sink ran: a receiver that dies mid-message gets it again.

Log lines carry the topic's device id, the message id and a reason code: never the body. Printing the
summary (stdout) and writing JSON files is the receiving side's job; those files hold patient data and
belong on the gateway's encrypted storage. Every string taken from a message is printed through ``visible``:
control, format (bidi) and separator characters appear as ``\\uXXXX``, so a box cannot drive the
operator's terminal or reorder what it shows.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mynabox.adapters.mqtt import MAX_PACKET_BYTES
from mynabox.gateway.text import visible
from mynabox.payload.envelope import EnvelopeError, Kind, is_device_id
from mynabox.payload.seal import Opened, Opener
from mynabox.summary.flags import derive_flags
from mynabox.summary.model import Summary, SummaryFormatError
from mynabox.vocab import Outcome

log = logging.getLogger("mynabox.gateway.receiver")

JST = timezone(timedelta(hours=9), "JST")
SUBSCRIPTIONS = ("mynabox/+/summary", "mynabox/+/audit")
_LEAF_KINDS = {"summary": {Kind.SUMMARY, Kind.CARD_RECORD}, "audit": {Kind.AUDIT}}
SESSION_EXPIRY_S = 7 * 24 * 3600
REORDER_WINDOW = 1024  # per device: how far behind its highest number a message may still arrive
QUARANTINE_MAX_ROWS = 10_000
QUARANTINE_MAX_BYTES = 256 * 1024 * 1024
QUARANTINE_KEEP_BYTES = 1024 * 1024  # of each message (the opener refuses larger ones anyway)
# The gateway's own I/O failing (disk full, store locked): not the message's fault, so it is not
# acknowledged and comes again. Anything else a sink raises was caused by the message: refused.
ENVIRONMENT_ERRORS: tuple[type[Exception], ...] = (OSError, sqlite3.Error)


class ReceiverError(Exception):
    """The receiver cannot run (seen-id store unusable, TLS files, broker refused us)."""


# --- verdicts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    opened: Opened


@dataclass(frozen=True)
class Duplicate:
    message_id: str
    device_id: str


@dataclass(frozen=True)
class Rejected:
    reason: str  # a code: topic, kind-topic, device-topic, or an envelope Reason value


Verdict = Accepted | Duplicate | Rejected


# --- seen ids ------------------------------------------------------------------------------------------


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


# --- the decision, without MQTT ------------------------------------------------------------------------


def parse_topic(topic: str) -> tuple[str, str] | None:
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "mynabox" or parts[2] not in _LEAF_KINDS or not is_device_id(parts[1]):
        return None
    return parts[1], parts[2]


class ReceiverCore:
    """Open, check, dedupe, hand to the sink. ``sink`` runs before the id is remembered (see module doc)."""

    def __init__(self, opener: Opener, seen: SeenStore, sink: Callable[[Opened], None]) -> None:
        self._opener = opener
        self._seen = seen
        self._sink = sink
        self.counts: Counter[str] = Counter()

    def handle(self, topic: str, payload: bytes, *, now: datetime) -> Verdict:
        """Raises only the gateway's own I/O errors (``ENVIRONMENT_ERRORS``): then nothing is acknowledged."""
        try:
            verdict = self._decide(topic, payload, now)
        except ENVIRONMENT_ERRORS:
            raise
        except Exception as err:  # a defect the message found: refused, not a stalled receiver
            verdict = Rejected(f"error:{type(err).__name__}")
        if isinstance(verdict, Accepted):
            try:
                self._sink(verdict.opened)
            except ENVIRONMENT_ERRORS:
                raise
            except Exception as err:
                verdict = Rejected(f"sink:{type(err).__name__}")
            else:
                opened = verdict.opened
                self._seen.remember(opened.message_id, opened.device_id, now=now, seq=opened.seq)
                self.counts["accepted"] += 1
                log.info(
                    "accepted %s %s #%d from %s", opened.kind, opened.message_id, opened.seq, _dev(topic)
                )
                return verdict
        if isinstance(verdict, Duplicate):
            self.counts["duplicate"] += 1
            log.info("duplicate %s from %s dropped", verdict.message_id, verdict.device_id)
            return verdict
        entry = self._seen.quarantine(topic, verdict.reason, bytes(payload), now=now)
        self.counts["rejected"] += 1
        self.counts[f"rejected:{verdict.reason}"] += 1
        log.warning("rejected a message on %s: %s (quarantined #%d)", _dev(topic), verdict.reason, entry)
        return verdict

    def _decide(self, topic: str, payload: bytes, now: datetime) -> Verdict:
        parsed = parse_topic(topic)
        if parsed is None:
            return Rejected("topic")
        device, leaf = parsed
        try:
            opened = self._opener.open(payload, now=now)
        except EnvelopeError as err:
            return Rejected(str(err.reason))
        if opened.device_id != device:
            return Rejected("device-topic")
        if opened.kind not in _LEAF_KINDS[leaf]:
            return Rejected("kind-topic")
        if opened.message_id in self._seen:
            return Duplicate(opened.message_id, opened.device_id)
        sequence = self._seen.check_sequence(opened.device_id, opened.seq, opened.message_id)
        if sequence == "duplicate":
            return Duplicate(opened.message_id, opened.device_id)
        if sequence != "new":
            return Rejected(sequence)
        return Accepted(opened)


def _dev(topic: str) -> str:
    parsed = parse_topic(topic)
    return parsed[0] if parsed else "an unexpected topic"


# --- output (the gateway side: patient data is expected here) ------------------------------------------

_SEX = {1: "男", 2: "女", 9: "不明"}
OUTCOME_LABELS = {  # for the operator; an unknown value is shown as it came
    Outcome.DELIVERED_SUMMARY: "サマリー送信",
    Outcome.CARD_RECORD: "カード記録送信（照会失敗）",
    Outcome.NOT_REGISTERED: "カード記録送信（マイナ保険証未登録）",
    Outcome.NO_CONSENT: "同意未選択・照会なし",
    Outcome.BUSY: "照会中の再タッチ・照会なし",
    Outcome.NOT_MY_NUMBER_CARD: "マイナンバーカード以外",
    Outcome.CARD_REMOVED: "読取中にカードが離れた",
    Outcome.CARD_UNRESPONSIVE: "カード応答なし",
    Outcome.READ_FAILED: "読取失敗",
    Outcome.PURGED: "保存期限切れで未送信のまま削除",
}


def _lines(lines: list[str]) -> str:
    return "\n".join(visible(line) for line in lines)


def format_opened(opened: Opened, *, today: date) -> str:
    """A readable Japanese rendering for the gateway's operator; every line goes through ``visible``."""
    sent = opened.created_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    clock = "" if opened.clock_synced else "（端末時刻未同期）"
    head = f"■ {opened.device_id}  {sent}{clock}  id {opened.message_id}  #{opened.seq}"
    if opened.kind == Kind.AUDIT:
        record = opened.body.get("record")
        outcome = record.get("outcome") if isinstance(record, dict) else None
        known = isinstance(outcome, str) and outcome in OUTCOME_LABELS
        label = OUTCOME_LABELS[Outcome(str(outcome))] if known else ""
        return _lines([head, f"  監査記録: {outcome}" + (f"（{label}）" if label else "")])
    summary = _summary_of(opened.body)
    rendered = None
    if summary is not None:
        try:
            rendered = format_summary(summary, today=today)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
            rendered = None  # schema-valid but unrenderable: the operator still sees the message's keys
    if rendered is None:
        title = (
            "カード記録（サマリー取得不可）" if opened.kind == Kind.CARD_RECORD else "サマリー（形式不明）"
        )
        keys = ", ".join(sorted(opened.body))
        return _lines([head, f"  {title}: 項目 {keys}"])
    return visible(head) + "\n" + rendered


def _summary_of(body: Mapping[str, object]) -> Summary | None:
    doc = body.get("summary", body)
    try:
        return Summary.from_json(doc)
    except SummaryFormatError:
        return None


def format_summary(summary: Summary, *, today: date) -> str:
    p = summary.patient
    lines = [
        f"  救急用サマリー（{summary.as_of.isoformat()} 時点）",
        f"  患者: {p.name}（{p.kana}）  性別: {_SEX.get(int(p.sex), '不明')}",
        f"  生年月日: {p.birth_date.isoformat()}  保険者番号: {p.insurer_number}",
    ]
    flags = derive_flags(summary, today=today)
    if flags:
        lines.append("  ⚠ 注意: " + " / ".join(f"{f.label}（{'、'.join(f.evidence)}）" for f in flags))
    else:
        lines.append("  注意事項: なし")
    sections: list[tuple[str, list[str]]] = [
        (
            "薬剤",
            [f"{m.date} {m.drug_name} {m.dose} {m.days}日分 ({m.prescriber})" for m in summary.medications],
        ),
        (
            "調剤（電子処方箋）",
            [f"{d.date} {d.drug_name} {d.dose} {d.days}日分" for d in summary.dispensings],
        ),
        ("受診歴", [f"{v.date} {v.facility} {v.department}" for v in summary.visits]),
        ("手術", [f"{s.date} {s.procedure} ({s.facility})" for s in summary.surgeries]),
        ("診療", [f"{t.date} {t.description} ({t.facility})" for t in summary.treatments]),
        ("透析", [f"{d.date} {d.facility}" for d in summary.dialyses]),
    ]
    if summary.allergies is not None:
        sections.append(
            (
                "アレルギー・禁忌",
                [
                    a.substance + (f"（{a.reaction}）" if a.reaction else "")
                    for a in summary.allergies.allergies
                ]
                + [f"禁忌: {c.drug_name}（{c.reason}）" for c in summary.allergies.contraindications],
            )
        )
    for title, items in sections:
        lines.append(f"  {title}: " + ("なし" if not items else ""))
        lines.extend(f"    - {item}" for item in items)
    lines.append(f"  健診: {summary.last_checkup or 'なし'}")
    return _lines(lines)


def format_quarantined(entry: QuarantineEntry) -> str:
    """One line per refused message for the operator (no body: it is still sealed)."""
    when = entry.received_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    return visible(f"#{entry.id}  {when}  {entry.topic}  {entry.reason}  {entry.size} bytes")


def write_json(directory: Path, opened: Opened) -> Path:
    """``<dir>/<device>/<message id>.json`` (0600), atomically: a redelivery rewrites the same file."""
    target_dir = directory / opened.device_id
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = target_dir / f"{opened.message_id}.json"
    doc = {
        "message_id": opened.message_id,
        "device_id": opened.device_id,
        "kind": str(opened.kind),
        "created_at": opened.created_at.isoformat(),
        "clock_synced": opened.clock_synced,
        "seq": opened.seq,
        "body": dict(opened.body),
    }
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A lone surrogate (valid in JSON text, not in UTF-8) is written as its JSON escape.
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


# --- MQTT ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiverSettings:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str = "mynabox-gateway"
    keepalive_s: int = 30


class Receiver:
    """Subscribes with a persistent session and feeds every message to a :class:`ReceiverCore`."""

    def __init__(
        self,
        settings: ReceiverSettings,
        core: ReceiverCore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:
        self._s = settings
        self._core = core
        self._clock = clock
        self._on_verdict = on_verdict
        self.subscribed = threading.Event()
        self.refused: str | None = None
        # Held while a message is handled and acknowledged: stop() waits for it, so a message already handed
        # to the sink has its PUBACK sent before DISCONNECT (else a clean stop makes the broker resend it).
        self._handling = threading.Lock()
        self._stopping = False
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(settings.cert), str(settings.key))
        except (OSError, ssl.SSLError, ValueError) as err:
            raise ReceiverError(f"TLS files: cannot load ({type(err).__name__})") from err
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        client.tls_set_context(ctx)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._cb_connect
        client.on_subscribe = self._cb_subscribe
        client.on_message = self._cb_message
        self._client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.MaximumPacketSize = MAX_PACKET_BYTES  # a broker without a limit must not fill our memory
        self._client.connect_async(
            self._s.host, self._s.port, keepalive=self._s.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        with self._handling:
            self._stopping = True
            self._client.disconnect()
        self._client.loop_stop()

    def _cb_connect(self, client: paho.Client, _u: Any, flags: Any, code: ReasonCode, _p: Any) -> None:
        if code.is_failure:
            self.refused = str(code)
            log.warning("broker refused the receiver: %s", code)
            return
        log.info("receiver connected (session present: %s)", flags.session_present)
        client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])

    def _cb_subscribe(self, _c: paho.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        if any(c.is_failure for c in codes):
            self.refused = "subscription refused: " + ", ".join(str(c) for c in codes)
            log.warning("%s", self.refused)
            return
        self.subscribed.set()

    def _cb_message(self, client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self._handling:
            if self._stopping:
                return  # not handled, not acknowledged: the persistent session gives it to the next run
            self._handle(client, message)

    def _handle(self, client: paho.Client, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = ""  # rejected as a bad topic, and acknowledged so it does not come back
        try:
            verdict = self._core.handle(topic, bytes(message.payload), now=self._clock())
        except Exception as err:  # the gateway's own I/O (disk full?): no PUBACK, the broker redelivers it
            log.error("handling a message failed (%s); it stays unacknowledged", type(err).__name__)
            return
        client.ack(message.mid, message.qos)
        if self._on_verdict is not None:
            self._on_verdict(verdict)
