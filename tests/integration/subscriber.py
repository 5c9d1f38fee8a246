"""A plain MQTT 5 subscriber with the gateway's certificate: what the broker hands a gateway, as it came."""

from __future__ import annotations

import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mynabox_testkit.stack import BoxStack
from support.cluster import client_context


class Subscriber:
    def __init__(self, stack: BoxStack, client_id: str, topic: str) -> None:
        kit = stack.kit
        assert kit is not None and stack.broker is not None
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self._client.tls_set_context(client_context(kit.pki.ca_cert, kit.pki.client(kit.gateway)))
        self._client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, 1)
        self._client.on_message = self._message
        self._client.connect("127.0.0.1", stack.broker.port)
        self._client.loop_start()

    def _message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def payloads(self, leaf: str | None = None) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if leaf is None or t.endswith("/" + leaf)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
