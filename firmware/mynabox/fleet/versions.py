"""`mynabox fleet versions`: every box's firmware, slot and last update result, from the retained `state`
topics of a broker (fleet ops connect with a certificate that may read `mynabox/+/state`, the gateway's).

Retained messages arrive right after the subscription; the command collects for `wait_s` and prints one line
per box. Each state document is hostile input: bounded, parsed strictly, only the known keys kept, printed
without control characters. A box whose document is unreadable is listed as such, not skipped.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mynabox.payload.envelope import is_device_id
from mynabox.record import record
from mynabox.tls import client_context
from mynabox.update.text import printable

TOPIC = "mynabox/+/state"
MAX_STATE_BYTES = 4096
MAX_BOXES = 10_000
COLUMNS = ("device", "version", "slot", "update_result", "update_version", "update_at", "state")


@record
class BoxVersion:
    device: str
    fields: dict[str, str]  # COLUMNS' values as text, "-" for none
    problem: str | None = None


def parse_state(device: str, payload: bytes) -> BoxVersion:
    if len(payload) > MAX_STATE_BYTES:
        return BoxVersion(device, {}, f"state document over {MAX_STATE_BYTES} bytes")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return BoxVersion(device, {}, "state document is not JSON")
    if not isinstance(data, dict):
        return BoxVersion(device, {}, "state document is not an object")
    fields = {}
    for key in COLUMNS[1:]:
        value = data.get(key)
        fields[key] = "-" if value is None else printable(str(value), 40)
    return BoxVersion(device, fields)


def table(boxes: list[BoxVersion]) -> list[str]:
    rows = [list(COLUMNS)]
    for box in sorted(boxes, key=lambda b: b.device):
        if box.problem:
            rows.append([box.device, f"({box.problem})"])
        else:
            rows.append([box.device, *(box.fields[c] for c in COLUMNS[1:])])
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def collect(
    host: str, port: int, *, ca: Path, cert: Path, key: Path, wait_s: float = 3.0, client_id: str = ""
) -> list[BoxVersion]:
    """The retained state of every box the broker holds, collected for `wait_s` after subscribing."""
    found: dict[str, BoxVersion] = {}
    lock = threading.Lock()
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.tls_set_context(client_context(ca, cert, key))

    def on_connect(c: paho.Client, _u: object, _f: object, code: object, _p: object) -> None:
        c.subscribe(TOPIC, 1)

    def on_subscribe(*_args: object) -> None:
        subscribed.set()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) != 3 or not is_device_id(parts[1]):
            return
        with lock:
            if len(found) < MAX_BOXES or parts[1] in found:
                found[parts[1]] = parse_state(parts[1], bytes(message.payload))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        if not subscribed.wait(max(wait_s, 10.0)):
            raise ConnectionError(f"no subscription to {TOPIC} on {host}:{port}")
        time.sleep(wait_s)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return list(found.values())
