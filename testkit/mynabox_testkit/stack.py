"""The whole box's surroundings on one machine: PC/SC, broker, summary service, keys and a config.

Used by `make demo`, the daemon's end-to-end tests and the benchmarks: a private pcscd with the vpcd
virtual reader, a mosquitto with TLS and per-device ACLs on loopback, the reference summary service over
HTTPS + mTLS, a test PKI, envelope keys, credential files, and a config.toml for `mynabox run`.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.gateway.subscriber import Receiver, ReceiverSettings
from mynabox_testkit.broker import DeliveryKit, Mosquitto
from mynabox_testkit.pcscd import PrivatePcscd
from mynabox_testkit.refsvc import ReferenceService

if TYPE_CHECKING:
    from collections.abc import Callable

    from mynabox.gateway.core import Verdict
    from mynabox.payload.seal import Opened

REFSVC_CLIENT = "refsvc-client"


@dataclass
class BoxStack:
    """Start with `with BoxStack(...) as stack:`; everything started is stopped on exit."""

    device_id: str = "amb-demo"
    consent_default: str = "none"
    consent_timeout_s: float = 60.0
    result_clear_s: float = 60.0
    panel: bool = True
    workdir: Path | None = None
    with_pcscd: bool = True
    config_extra: dict[str, dict[str, object]] = field(default_factory=dict)
    log_level: str = "info"

    def __post_init__(self) -> None:
        self._own_dir = self.workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="mynabox-stack-")) if self.workdir is None else self.workdir
        self.kit: DeliveryKit | None = None
        self.pcscd: PrivatePcscd | None = None
        self.broker: Mosquitto | None = None
        self.refsvc: ReferenceService | None = None
        self.config_path = self.dir / "config.toml"
        self.state_dir = self.dir / "state"
        self.frames_dir = self.dir / "frames"
        self.credentials_dir = self.dir / "credentials"

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> BoxStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.kit = DeliveryKit.create(self.dir / "kit", devices=(self.device_id, REFSVC_CLIENT))
        if self.with_pcscd:
            self.pcscd = PrivatePcscd()
            self.pcscd.start()
        self.broker = Mosquitto(self.kit.broker_tls, self.dir / "broker")
        self.broker.start()
        self.refsvc = ReferenceService(
            cert_file=self.kit.pki.server_cert,
            key_file=self.kit.pki.server_key,
            client_ca_file=self.kit.pki.ca_cert,
        ).start()
        self._write_credentials()
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.write_config()

    def stop(self) -> None:
        stoppers = [part.stop for part in (self.refsvc, self.broker) if part is not None]
        if self.pcscd is not None:
            stoppers.append(self.pcscd.close)  # close: also removes its config and log directory
        for stop in stoppers:
            with contextlib.suppress(Exception):  # keep stopping the rest
                stop()
        self.refsvc = self.broker = self.pcscd = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- files ------------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        kit = self._kit()
        self.credentials_dir.mkdir(mode=0o700, exist_ok=True)
        pairs = {
            "device-key": kit.device_key_files[self.device_id],
            "mqtt-client-key": kit.pki.client(self.device_id).key,
            "summary-client-key": kit.pki.client(REFSVC_CLIENT).key,
        }
        for name, source in pairs.items():
            target = self.credentials_dir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
        audit = self.credentials_dir / "audit-key"
        audit.write_bytes(secrets.token_bytes(32))
        audit.chmod(0o600)

    def write_config(self) -> Path:
        kit = self._kit()
        assert self.broker is not None and self.refsvc is not None
        sections: dict[str, dict[str, object]] = {
            "device": {"id": self.device_id, "unit_id": "demo-unit", "test_mode": True},
            "reader": {"extended_apdu": "auto"},
            "consent": {"default": self.consent_default, "window_s": 30, "timeout_s": self.consent_timeout_s},
            "display": {
                "driver": "dummy",
                "result_clear_s": self.result_clear_s,
                "error_clear_s": 15,
                "frames_dir": str(self.frames_dir),
            },
            "panel": {"enabled": self.panel, "pin_factory": "mock"},
            "summary": {
                "url": self.refsvc.base_url,
                "ca_file": str(kit.pki.ca_cert),
                "client_cert": str(kit.pki.client(REFSVC_CLIENT).cert),
                "client_key": "summary-client-key",
                "timeout_s": 3.0,
                "retries": 1,
            },
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.broker.port,
                "ca_file": str(kit.pki.ca_cert),
                "client_cert": str(kit.pki.client(self.device_id).cert),
                "client_key": "mqtt-client-key",
                "keepalive_s": 10,
                "window": 10,
            },
            "sealing": {"device_key": "device-key", "gateway_public_key": str(self._gateway_public())},
            "storage": {"state_dir": str(self.state_dir), "outbox_retention_h": 168},
            "audit": {"key": "audit-key"},
            "log": {"level": self.log_level},
        }
        for section, values in self.config_extra.items():
            sections.setdefault(section, {}).update(values)
        lines = [f'credentials_dir = "{self.credentials_dir}"', ""]
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
            lines.append("")
        self.config_path.write_text("\n".join(lines), encoding="utf-8")
        return self.config_path

    def _gateway_public(self) -> Path:
        from mynabox.adapters.keyfiles import load_private_key, save_public_key

        kit = self._kit()
        path = self.dir / "gateway-public.pem"
        if not path.exists():
            save_public_key(path, load_private_key(kit.gateway_key_file))
        return path

    def _kit(self) -> DeliveryKit:
        if self.kit is None:
            raise RuntimeError("stack not started")
        return self.kit

    def gateway_receiver(
        self,
        sink: Callable[[Opened], None],
        *,
        client_id: str = "mynabox-gateway",
        on_raw: Callable[[str, bytes, Verdict], None] | None = None,
    ) -> Receiver:
        """The reference gateway receiver subscribed to this stack's broker (not started)."""
        kit = self._kit()
        assert self.broker is not None
        files = kit.pki.client(kit.gateway)
        settings = ReceiverSettings(
            host="127.0.0.1",
            port=self.broker.port,
            ca=kit.pki.ca_cert,
            cert=files.cert,
            key=files.key,
            client_id=client_id,
        )
        seen = SeenStore(self.dir / f"seen-{client_id}.db")
        return Receiver(settings, ReceiverCore(kit.opener(), seen, sink, check_bodies=True), on_raw=on_raw)

    def env(self) -> dict[str, str]:
        """Environment for a `mynabox run` subprocess: the private pcscd's socket."""
        return dict(self.pcscd.env) if self.pcscd else {}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
