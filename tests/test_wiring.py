"""The composition root's builders: the adapters made from the config's sections (the config imports none)."""

from __future__ import annotations

from pathlib import Path

from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.outbox import Outbox
from mynabox.config import load_config
from mynabox.testing.boxfiles import VALID, credentials_env, make_box, write_config
from mynabox.wiring import summary_client


def test_sections_map_onto_the_adapters(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    config = load_config(write_config(box, VALID), environ=credentials_env(box))
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, config.device.id) == ("127.0.0.1", 8883, "amb-7")
    assert mqtt.client_key.path == box / "creds" / "mqtt-client-key"
    # Both build their TLS contexts at once, from the files the config check accepted.
    with Outbox(tmp_path / "outbox.db") as outbox:
        MqttLink(mqtt, config.device.id, outbox)
    client = summary_client(config.summary)
    client.close()
