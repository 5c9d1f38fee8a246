"""What the suite tests: a box on a real bench, or the virtual rig on this machine.

The hardware bench is the box itself (the suite runs on its Pi with `mynabox.service` stopped) and the bench
broker's gateway side from the rig file. The virtual rig is the real PC/SC stack with the vpcd reader and a
virtual My Number Card, luma's dummy display, gpiozero's mock pins, mosquitto with TLS, the reference summary
service, and a scripted technician who acts on the prompts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from mynabox.adapters.keyfiles import load_private_key, load_public_keys
from mynabox.adapters.panel import PinMap, load_pin_map
from mynabox.config import Config, load_config
from mynabox.gateway.subscriber import ReceiverSettings
from mynabox.payload.seal import Opener

from .prompts import Operator, ScriptedOperator, TtyOperator
from .rig import Rig


@dataclass
class Bench:
    rig: Rig
    config_path: Path
    config: Config
    pins: PinMap
    operator: Operator
    pin_factory: Any = None
    display_view: Any = None  # the Oled the current check drives (the virtual technician looks at it)
    cards: dict[str, Any] = field(default_factory=dict)  # virtual: name -> VirtualMyNumberCard
    _closers: list[Any] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return self.config.device.id

    @property
    def reader_filter(self) -> str | None:
        return self.rig.reader_name or self.config.reader.name_filter

    def serial(self) -> str:
        """The box's hardware serial (the Pi's, from the device tree), or what the rig file says."""
        if self.rig.serial:
            return self.rig.serial
        if self.rig.virtual:
            return f"virtual-{self.device_id}"
        for source in (
            Path("/proc/device-tree/serial-number"),
            Path("/sys/firmware/devicetree/base/serial-number"),
        ):
            with contextlib.suppress(OSError):
                return source.read_bytes().rstrip(b"\0").decode("ascii", errors="replace").strip()
        with contextlib.suppress(OSError):
            return "machine-" + Path("/etc/machine-id").read_text().strip()
        return "unknown"

    def gateway(self) -> tuple[ReceiverSettings, Opener]:
        """The bench gateway's side: its MQTT client certificate and the key that opens the box's messages."""
        b = self.rig.bench
        host, port = self.config.mqtt.host, self.config.mqtt.port
        settings = ReceiverSettings(
            host=host,
            port=port,
            ca=b["gateway_ca"],
            cert=b["gateway_cert"],
            key=b["gateway_key"],
            client_id=f"mynabox-hil-{self.device_id}",
        )
        opener = Opener(
            load_private_key(b["gateway_envelope_key"]),
            load_public_keys(b["device_keys_dir"]),
            max_age=timedelta(days=1),
            max_skew=timedelta(minutes=5),
            max_size=1024 * 1024,
        )
        return settings, opener

    def env(self) -> dict[str, str]:
        return {}

    def display_image(self) -> Image.Image | None:
        oled = self.display_view
        image = getattr(getattr(oled, "device", None), "image", None)
        return image if isinstance(image, Image.Image) else None

    def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers.clear()


def open_bench(rig: Rig) -> Bench:
    if rig.virtual:
        from .virtual import open_virtual_bench

        return open_virtual_bench(rig)
    assert rig.box_config is not None
    config = load_config(rig.box_config)
    pins = load_pin_map(rig.pins_file or config.panel.pins_file)
    operator = TtyOperator(rig.technician, rig.operator_timeout_s)
    bench = Bench(rig, rig.box_config, config, pins, operator)
    bench._closers.append(operator.close)
    _refuse_if_daemon_runs()
    return bench


def _refuse_if_daemon_runs() -> None:
    """The daemon would hold the reader, the OLED and the pins the suite must drive."""
    try:
        active = subprocess.run(
            ["systemctl", "is-active", "--quiet", "mynabox.service"], check=False, timeout=5
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return
    if active == 0:
        raise RuntimeError("mynabox.service is running: `sudo systemctl stop mynabox` first, then `make hil`")


def scripted(rig: Rig, act: Any) -> ScriptedOperator:
    return ScriptedOperator(rig.technician, rig.operator_timeout_s, act)


def environ_with(bench: Bench) -> dict[str, str]:
    return dict(os.environ, **bench.env())
