"""The receiver's MQTT side: subscribes to every box's sealed messages and feeds them to a ``ReceiverCore``.

The MQTT session is persistent (fixed client id, ``clean_start`` false, a session expiry), and the broker must
run with persistence, so nothing is missed while the receiver is down. PUBACKs are sent by hand after the
sink ran: a receiver that dies mid-message gets it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mynabox.adapters.mqtt import MAX_PACKET_BYTES
from mynabox.gateway.core import ReceiverCore, ReceiverError, Verdict, log
from mynabox.payload import topics
from mynabox.record import record
from mynabox.tls import TlsFilesError, client_context

# paho's network loop waits with select(): a socket numbered at or past FD_SETSIZE never reads as ready, so
# the receiver would retry for ever without a word (paho issue 819). `mynabox receive` caps its page
# connections well below it; a process embedding the receiver must keep its open files below it too.
FD_SETSIZE = 1024
SUBSCRIPTIONS = tuple(topics.subscription(leaf) for leaf in topics.KINDS)
SESSION_EXPIRY_S = 7 * 24 * 3600


@record
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
        on_raw: Callable[[str, bytes, Verdict], None] | None = None,
    ) -> None:
        self._s = settings
        self._core = core
        self._clock = clock
        self._on_verdict = on_verdict
        self._on_raw = (
            on_raw  # the message as it came and its verdict (tests check the wire against the docs)
        )
        self.subscribed = threading.Event()
        self.refused: str | None = None
        # Held while a message is handled and acknowledged: stop() waits for it, so a message already handed
        # to the sink has its PUBACK sent before DISCONNECT (else a clean stop makes the broker resend it).
        self._handling = threading.Lock()
        self._stopping = False
        try:
            ctx = client_context(settings.ca, settings.cert, settings.key)
        except TlsFilesError as err:
            raise ReceiverError(f"TLS files: cannot load ({type(err.cause).__name__})") from err.cause
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        client.tls_set_context(ctx)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._cb_connect
        client.on_subscribe = self._cb_subscribe
        client.on_message = self._cb_message
        client.on_disconnect = self._cb_disconnect
        client.on_socket_open = self._cb_socket_open
        self._client = client

    @property
    def client_id(self) -> str:
        return self._s.client_id

    @property
    def connected(self) -> bool:
        """Connected to the broker now (else it retries every ≤ 10 s; the session keeps what comes)."""
        return self._client.is_connected()

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

    def _cb_socket_open(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        if sock.fileno() >= FD_SETSIZE:
            log.error(
                "the broker connection got descriptor %d: paho waits with select(), which cannot use one "
                "at or past %d; keep this process's open files below that",
                sock.fileno(),
                FD_SETSIZE,
            )

    def _cb_disconnect(self, _c: paho.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        if not self._stopping:
            log.warning("receiver lost the broker (%s); retrying", code)

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
        if self._on_raw is not None:
            self._on_raw(topic, bytes(message.payload), verdict)
