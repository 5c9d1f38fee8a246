"""The MQTT link (paho-mqtt 2.x, callback API v2, MQTT 5, TLS 1.2+, client certificate): drains the outbox.

Delivery rule: a message leaves the outbox only when its PUBACK says the broker took it for someone. A PUBACK
with a failure code (e.g. 0x87 not authorized) keeps it; it is tried again after the next reconnect. A PUBACK
0x10 (no matching subscribers: the gateway's session is gone, so nobody will ever get it) keeps it too: the
link pauses sending, with a back-off from ``reconnect_min_s`` doubling to ``reconnect_max_s``, then sends
again from the oldest record. Each such PUBACK is counted in ``no_subscriber`` (in the retained state
document too) and the first of each pause logs one line with the message id.

Session: clean start, no session expiry. The device subscribes to nothing, and paho keeps no state on disk
(a broker-side session would outlive paho's memory of its own in-flight ids after a restart); the outbox is
the durable session. After a reconnect paho re-sends its own unacknowledged publishes; we resend held ones.

In-flight window: paho can send past ``max_inflight`` after a reconnect (platform-notes.md), so the link keeps
its own bound: never more than ``window`` outbox messages handed to paho without a PUBACK.

Threads: paho's network thread (``loop_start``) runs the callbacks; they only put events on a queue, because
paho calls ``on_publish`` with its own lock held and anything heavier could deadlock against ``publish``.
One worker thread of ours owns every decision: it publishes, acks the outbox (whose lock makes that safe
beside the daemon's ``put``) and calls ``on_link``/``on_rejected`` - so those callbacks run on the worker
thread. Availability: last will ``offline`` (retained); ``online`` (retained) on every connect; ``offline``
on ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, assert_never

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mynabox.adapters.outbox import Outbox, OutboxError, OutboxItem
from mynabox.config.model import MqttConfig
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, is_device_id
from mynabox.payload.topics import topic
from mynabox.record import Signal, record
from mynabox.tls import TlsFilesError, client_context

log = logging.getLogger("mynabox.mqtt")

STATE_KEYS = frozenset(
    {
        "version",
        "state",
        "reader_present",
        "outbox_depth",
        "clock_synced",
        "failed_parts",  # "display+buttons": the parts the box works without now ("" when none)
        "no_subscriber",
        "slot",  # the slot booted (A/B, from rauc.slot=), null when not booted by boot.scr
        "boot_state",  # what boot.scr found at this boot (ok, copy0-bad, copy1-bad, both-bad) or null
        "update_result",  # the last update's result (mynabox.update.lastresult), null: none yet
        "update_version",
        "update_at",  # ISO 8601 with its zone
    }
)
# A PUBLISH of the largest sealed message: payload plus fixed header (<= 5 bytes), topic
# (mynabox/<64>/summary, < 100), packet id and properties; 1 kB covers it. Brokers and the receiver refuse
# larger packets.
MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 1024
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason code: accepted, but delivered to nobody
_STATE_TEXT = re.compile(r"[A-Za-z0-9_.:+-]{0,64}")
_TICK_S = 1.0  # the worker looks at the outbox at least this often (it also wakes on notify())
_OFFLINE_ACK_S = 1.0  # at stop, how long "offline" may wait for its PUBACK (else the broker sends the will)
_NETWORK_STOP_S = 0.5  # at stop, how long to wait for paho's thread to leave a connect in progress


class LinkError(Exception):
    """The MQTT link failed; the message names the cause, never payload data."""


class LinkConfigError(LinkError):
    """TLS files or settings are unusable."""


class LinkDownError(LinkError):
    """The broker is unreachable, or the TCP/TLS handshake failed (wrong CA, refused certificate)."""


class LinkRefusedError(LinkError):
    """The broker answered CONNECT with a failure reason code."""


class LinkStateError(ValueError):
    """A state document has a key or value that is not allowed (the state topic carries no personal data)."""


def tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Verify the broker against our CA (name checked), present the client certificate, TLS 1.2 or later."""
    try:
        return client_context(ca, cert, key)
    except TlsFilesError as err:
        name = type(err.cause).__name__
        raise LinkConfigError(f"TLS files {ca}, {cert}, {key}: cannot load ({name})") from err.cause


def check_state(state: Mapping[str, object]) -> bytes:
    """The state document as JSON; only known keys and scalar values, so no patient data can slip in."""
    unknown = set(state) - STATE_KEYS
    if unknown:
        raise LinkStateError(f"state keys not allowed: {sorted(unknown)}")
    for name, value in state.items():
        ok = value is None or isinstance(value, bool | int)
        ok = ok or (isinstance(value, str) and _STATE_TEXT.fullmatch(value) is not None)
        if not ok:
            raise LinkStateError(f"state value of {name} must be null, a bool, an int or a short token")
    return json.dumps(dict(state), sort_keys=True, separators=(",", ":")).encode("ascii")


# What the worker is told (by paho's callbacks, the daemon, its own tick): typed like the core's events, so
# each carries exactly its own fields and the worker's dispatch is checked by mypy.
@record
class _Connected:
    code: ReasonCode


class _ConnectFailed(Signal):
    pass


@record
class _Disconnected:
    code: ReasonCode


@record
class _Puback:
    mid: int
    code: ReasonCode


class _Drain(Signal):
    pass


@record
class _State:
    state: Mapping[str, object]


class _Stop(Signal):
    pass


_Work = _Connected | _ConnectFailed | _Disconnected | _Puback | _Drain | _State
_Event = _Work | _Stop


class MqttLink:
    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        outbox: Outbox,
        *,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 60,
        connect_timeout_s: float = 10.0,
        on_link: Callable[[bool], None] | None = None,
        on_rejected: Callable[[str, str], None] | None = None,
        on_acked: Callable[[str], None] | None = None,
    ) -> None:
        """`config` is the [mqtt] section as loaded (its client key a credential, resolved here); the
        reconnect back-off and the connect timeout are not configurable, tests shorten them."""
        if not is_device_id(device_id):
            raise LinkConfigError("device id is not a valid topic segment")
        if not 0 < config.port < 65536 or not 1 <= config.window <= 100:
            raise LinkConfigError("port or window out of range")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise LinkConfigError("reconnect delays must satisfy 0 < min <= max")
        self._cfg = config
        self._device_id = device_id
        self._reconnect_min_s, self._reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._connect_timeout_s = connect_timeout_s
        self._outbox = outbox
        self._on_link = on_link
        self._on_rejected = on_rejected
        self._on_acked = on_acked
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._online = False
        self._last_error: LinkError | None = None
        self._in_flight: dict[int, OutboxItem] = {}  # paho mid -> outbox item awaiting its PUBACK
        self._held: set[str] = set()  # message ids whose PUBACK failed: retried after a reconnect
        self._cursor = 0  # highest outbox seq handed to paho on this connection
        self._state: Mapping[str, object] | None = None
        self._no_subscriber = 0  # PUBACKs 0x10 since start (each record kept and sent again)
        self._paused_until = 0.0  # monotonic: no sending before this after a PUBACK 0x10
        self._backoff_s = float(reconnect_min_s)
        self._client = self._make_client(
            tls_context(config.ca_file, config.client_cert, config.client_key.path)
        )
        self._worker = threading.Thread(target=self._run, name="mqtt-link", daemon=True)

    def _make_client(self, ctx: ssl.SSLContext) -> paho.Client:
        device = self._device_id
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"mynabox-{device}", protocol=paho.MQTTv5)
        client.tls_set_context(ctx)
        client.will_set(topic(device, "availability"), b"offline", qos=1, retain=True)
        client.reconnect_delay_set(self._reconnect_min_s, self._reconnect_max_s)
        client.max_inflight_messages_set(self._cfg.window + 4)  # ours plus availability/state
        client.connect_timeout = self._connect_timeout_s
        client.on_connect = self._cb_connect
        client.on_connect_fail = self._cb_connect_fail
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        return client

    # --- public API (any thread) -------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online

    @property
    def last_error(self) -> LinkError | None:
        return self._last_error

    @property
    def no_subscriber(self) -> int:
        """PUBACKs that said nobody subscribes (0x10); those records stayed in the outbox."""
        return self._no_subscriber

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff until ``stop``."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        try:
            self._client.connect_async(
                self._cfg.host,
                self._cfg.port,
                keepalive=self._cfg.keepalive_s,
                clean_start=True,
                properties=props,
            )
        except (OSError, ValueError) as err:
            raise LinkConfigError(f"cannot set up the connection ({type(err).__name__})") from err
        self._worker.start()
        self._client.loop_start()

    def notify(self) -> None:
        """The outbox has something new: drain it now rather than at the next tick."""
        self._events.put(_Drain())

    def publish_state(self, state: Mapping[str, object]) -> None:
        """Retained ``…/state``; kept and re-published on every connect, so the latest is always there.

        The link adds its own ``no_subscriber`` count."""
        check_state(state)  # refuse a bad document in the caller's thread
        self._events.put(_State(dict(state)))

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline``, disconnect cleanly (no last will), stop both threads."""
        if self._worker.is_alive():
            self._events.put(_Stop())
            self._worker.join(timeout)
        # paho's thread may be inside a TCP connect (up to connect_timeout_s) or a name lookup, which nothing
        # interrupts: in an underground car park SIGTERM took 7 s and systemd's TimeoutStopSec would kill us.
        # It is a daemon thread and holds nothing to save (the outbox keeps every message), so do not wait.
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(_NETWORK_STOP_S)
        if stopper.is_alive():
            log.warning("stopping with the broker connection still being attempted")
        elif (sock := self._client.socket()) is not None:
            # Stopped before its CONNACK (a box that failed to start right after the link): paho's loop ends
            # without closing the socket it connected, and the connection would stay open.
            with contextlib.suppress(OSError):
                sock.close()

    # --- paho callbacks (paho's thread): only enqueue ---------------------------------------------------

    def _cb_connect(self, _c: paho.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        self._events.put(_Connected(code))

    def _cb_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        self._events.put(_ConnectFailed())

    def _cb_disconnect(self, _c: paho.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        self._events.put(_Disconnected(code))

    def _cb_publish(self, _c: paho.Client, _u: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        self._events.put(_Puback(mid, code))

    # --- the worker ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=_TICK_S)
            except queue.Empty:
                event = _Drain()
            if isinstance(event, _Stop):
                self._shutdown()
                return
            try:
                self._handle(event)
            except OutboxError as err:
                # The outbox is the daemon's to fix (it sees the same error on put); keep the link alive.
                log.error("outbox error in the link: %s", err)
            except Exception:  # never let the worker die silently: the box would stop delivering
                log.exception("unexpected error in the MQTT link worker")

    def _handle(self, event: _Work) -> None:
        if isinstance(event, _Connected):
            self._connected(event.code)
        elif isinstance(event, _ConnectFailed):
            self._last_error = LinkDownError("cannot connect to the broker (network, TLS or certificate)")
            log.warning("%s", self._last_error)
            self._set_online(False)
        elif isinstance(event, _Disconnected):
            if self._online:
                self._last_error = LinkDownError(f"broker connection lost ({event.code})")
            else:  # with TLS 1.3 a refused client certificate shows only now, after our CONNECT
                self._last_error = LinkDownError("broker closed the connection before accepting it")
            log.warning("%s", self._last_error)
            self._set_online(False)
        elif isinstance(event, _Puback):
            self._puback(event.mid, event.code)
            self._drain()
        elif isinstance(event, _State):
            self._state = event.state
            self._publish_state()
        elif isinstance(event, _Drain):
            self._drain()
        else:
            assert_never(event)

    def _connected(self, code: ReasonCode | None) -> None:
        if code is not None and code.is_failure:
            self._last_error = LinkRefusedError(f"broker refused the connection: {code}")
            log.warning("%s", self._last_error)
            self._set_online(False)
            return
        self._last_error = None
        self._cursor = 0
        self._held.clear()
        device = self._device_id
        self._client.publish(topic(device, "availability"), b"online", qos=1, retain=True)
        log.info("broker connected")
        self._set_online(True)
        self._publish_state()
        self._drain()

    def _set_online(self, online: bool) -> None:
        if online != self._online:
            self._online = online
            if self._on_link is not None:
                self._on_link(online)

    def _publish_state(self) -> None:
        if self._online and self._state is not None:
            doc = check_state({**self._state, "no_subscriber": self._no_subscriber})
            self._client.publish(topic(self._device_id, "state"), doc, qos=1, retain=True)

    def _puback(self, mid: int, code: ReasonCode | None) -> None:
        item = self._in_flight.pop(mid, None)
        if item is None:
            return  # availability or state
        if code is not None and code.is_failure:
            self._held.add(item.message_id)
            log.warning("broker refused message %s: %s (kept in the outbox)", item.message_id, code)
            if self._on_rejected is not None:
                self._on_rejected(item.message_id, str(code))
            return
        if code is not None and code.value == NO_MATCHING_SUBSCRIBERS:
            self._nobody_listens(item)
            return
        self._backoff_s = float(self._reconnect_min_s)
        self._outbox.ack(item.message_id)
        if self._on_acked is not None:
            self._on_acked(item.message_id)

    def _nobody_listens(self, item: OutboxItem) -> None:
        """The broker took the message but no session subscribes: deleting it would lose it. Keep it,
        pause, and send again from the oldest record (in-flight ones are skipped, acked ones are gone)."""
        self._no_subscriber += 1
        self._cursor = 0
        now = time.monotonic()
        if now < self._paused_until:
            return  # the rest of a window sent before the first 0x10 came back: same pause
        self._paused_until = now + self._backoff_s
        log.warning(
            "no subscriber at the broker for message %s: kept in the outbox, sending again in %.0f s",
            item.message_id,
            self._backoff_s,
        )
        self._backoff_s = min(self._backoff_s * 2, float(self._reconnect_max_s))
        self._publish_state()

    def _drain(self) -> None:
        if not self._online or time.monotonic() < self._paused_until:
            return
        pending = {item.message_id for item in self._in_flight.values()}
        while len(self._in_flight) < self._cfg.window:
            batch = self._outbox.next_batch(self._cfg.window - len(self._in_flight), after=self._cursor)
            if not batch:
                return
            for item in batch:
                self._cursor = item.seq
                if item.message_id in pending or item.message_id in self._held:
                    continue
                if len(item.payload) > MAX_MESSAGE_BYTES:
                    # Sealed before the limit was enforced: the broker would cut the connection on every
                    # try. It stays in the outbox until the retention purge audits it.
                    self._held.add(item.message_id)
                    log.warning(
                        "message %s is over the size limit: not sent, kept for the purge", item.message_id
                    )
                    continue
                info = self._client.publish(item.topic, item.payload, qos=1)
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    # Not queued by paho: stop here; the next connect starts again from the oldest.
                    log.warning("publish not accepted by the client (%s)", paho.error_string(info.rc))
                    return
                self._in_flight[info.mid] = item  # NO_CONN: paho queued it and sends it on reconnect

    def _shutdown(self) -> None:
        if self._online:
            info = self._client.publish(
                topic(self._device_id, "availability"), b"offline", qos=1, retain=True
            )
            # If the connection is already gone, the broker sends the last will instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=_OFFLINE_ACK_S)
        self._client.disconnect()
        self._set_online(False)
