"""The configuration as frozen dataclasses: what the rest of the box reads (parsing is in `load`)."""

from __future__ import annotations

import dataclasses
import enum
import logging
from pathlib import Path
from typing import Any

from mynabox.adapters.keyfiles import CREDENTIALS_ENV, credential_path, read_small_file
from mynabox.payload.envelope import MAX_MESSAGE_BYTES
from mynabox.payload.keys import Secret
from mynabox.record import record
from mynabox.vocab import ConsentMode

MASK = "********"
MAX_CREDENTIAL_BYTES = 64 * 1024


@record
class Issue:
    key: str
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}" + (f" — {self.hint}" if self.hint else "")


class ConfigError(Exception):
    """Everything wrong with a config file, found in one pass."""

    def __init__(self, source: str, issues: list[Issue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s)\n{lines}")


@record
class Credential:
    """A secret file by credential name; the contents are read only on demand, into a masked `Secret`."""

    name: str
    directory: Path | None

    @property
    def path(self) -> Path:
        env = {} if self.directory is None else {CREDENTIALS_ENV: str(self.directory)}
        return credential_path(self.name, env)

    @classmethod
    def at(cls, path: Path) -> Credential:
        """A key file outside a credentials directory, named as one (harnesses, tests)."""
        return cls(path.name, path.parent)

    def read(self) -> Secret[bytes]:
        return Secret(read_small_file(self.path, limit=MAX_CREDENTIAL_BYTES, what="a credential"))

    def describe(self) -> str:
        where = "<no credentials directory>" if self.directory is None else str(self.directory / self.name)
        return f"credential {self.name!r} at {where} (contents {MASK})"


# Choice fields: each enum's values are the words the file uses (check-config prints them back); what the
# rest of the box needs is a property of the member, so no one outside the config maps strings.


class ExtendedApdu(enum.StrEnum):
    AUTO = "auto"  # probe the card
    ON = "on"
    OFF = "off"

    @property
    def forced(self) -> bool | None:
        """Extended-length APDUs forced on or off; None: probe."""
        return None if self is ExtendedApdu.AUTO else self is ExtendedApdu.ON


class DefaultConsent(enum.StrEnum):
    NONE = "none"  # wait for the crew
    ORAL = "oral"
    EMERGENCY = "emergency"

    @property
    def mode(self) -> ConsentMode | None:
        """The consent recorded when no button is pressed; None: none is, the crew must choose."""
        return _CONSENT_MODES[self]


_CONSENT_MODES = {
    DefaultConsent.NONE: None,
    DefaultConsent.ORAL: ConsentMode.ORAL_CONSENT,
    DefaultConsent.EMERGENCY: ConsentMode.LIFE_SAVING_EXCEPTION,
}


class DisplayDriver(enum.StrEnum):
    SSD1306 = "ssd1306"
    SH1106 = "sh1106"
    DUMMY = "dummy"  # no hardware; optionally writes PNG frames


class PinFactory(enum.StrEnum):
    LGPIO = "lgpio"  # the kernel's GPIO character device through lgpio (adapters.gpiochip): the box
    MOCK = "mock"  # gpiozero's mock pins (bench, tests, demo)


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The `logging` level."""
        return logging.getLevelNamesMapping()[self.upper()]


@record
class DeviceConfig:
    id: str
    unit_id: str | None = None
    crew_id: str | None = None
    test_mode: bool = False


@record
class ReaderConfig:
    name_filter: str | None = None
    extended_apdu: ExtendedApdu = ExtendedApdu.AUTO
    hang_s: float = 20.0


@record
class ConsentConfig:
    default: DefaultConsent = DefaultConsent.NONE
    window_s: float = 30.0
    timeout_s: float = 60.0


@record
class DisplayConfig:
    driver: DisplayDriver = DisplayDriver.SSD1306
    i2c_port: int = 1
    i2c_address: int = 0x3C
    rotate: int = 0
    result_clear_s: float = 60.0
    error_clear_s: float = 15.0
    frames_dir: Path | None = None


@record
class PanelConfig:
    enabled: bool = True
    pins_file: Path | None = None  # None: the pin map packaged with the firmware
    pin_factory: PinFactory = PinFactory.LGPIO


@record
class SummaryConfig:
    url: str
    ca_file: Path
    client_cert: Path
    client_key: Credential
    timeout_s: float = 5.0
    retries: int = 2
    limit_s: float = 10.0
    keepalive_s: float = 50.0  # 0: a new connection per lookup


@record
class MqttConfig:
    host: str
    ca_file: Path
    client_cert: Path
    client_key: Credential
    port: int = 8883
    keepalive_s: int = 30
    window: int = 10


@record
class SealingConfig:
    device_key: Credential
    gateway_public_key: Path
    max_message_bytes: int = MAX_MESSAGE_BYTES  # payload.envelope: the limit box, receiver and broker share


@record
class StorageConfig:
    state_dir: Path = Path("/var/lib/mynabox")
    outbox_retention_h: int = 168


@record
class UpdateConfig:
    idle_min: float = 15.0  # no read this long (and the outbox empty) before switching to an installed update
    boot_dir: Path = Path("/boot/firmware")  # bootstate.0/1 (mynabox.update.bootstate)
    # rauc.slot= says which slot U-Boot booted; mynabox.service copies /proc/cmdline there (ProcSubset=pid)
    cmdline: Path = Path("/run/mynabox/cmdline")
    reboot_command: str = "/usr/bin/systemctl reboot"


@record
class AuditConfig:
    key: Credential


@record
class LogConfig:
    level: LogLevel = LogLevel.INFO


@record
class Config:
    source: Path
    credentials_dir: Path | None
    device: DeviceConfig
    reader: ReaderConfig
    consent: ConsentConfig
    display: DisplayConfig
    panel: PanelConfig
    summary: SummaryConfig
    mqtt: MqttConfig
    sealing: SealingConfig
    storage: StorageConfig
    audit: AuditConfig
    log: LogConfig
    update: UpdateConfig = UpdateConfig()

    def masked_dict(self) -> dict[str, Any]:
        """Plain values for printing; credentials show their name and location, never their contents."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def plain(value: object) -> Any:
    if isinstance(value, Credential):
        return value.describe()
    if isinstance(value, Secret):
        return MASK
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value  # the word the file uses
    return value
