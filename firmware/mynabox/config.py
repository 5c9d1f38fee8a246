"""The box's configuration: one TOML file parsed into frozen dataclasses, every problem reported at once.

Path: ``--config``, else ``$MYNABOX_CONFIG``, else ``/etc/mynabox/config.toml``. Relative paths in the
file are taken relative to the file's directory. Secrets never live in the TOML: a key names a *credential*,
a file in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``), or for development in
``$MYNABOX_CREDENTIALS_DIR`` or the top-level ``credentials_dir`` key. A value that looks like key material
(PEM, long base64/hex) is an error, and its text is never echoed.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mynabox.payload.keys import (
    CREDENTIALS_ENV,
    KeyFileError,
    Secret,
    credential_path,
    load_audit_key,
    load_private_key,
    load_public_key,
)

if TYPE_CHECKING:
    from mynabox.adapters.mqtt import LinkSettings
    from mynabox.adapters.summary_client import HttpsSummaryClient

DEFAULT_PATH = Path("/etc/mynabox/config.toml")
CONFIG_ENV = "MYNABOX_CONFIG"
DEV_CREDENTIALS_ENV = "MYNABOX_CREDENTIALS_DIR"
MASK = "********"

_DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
_KEYLIKE = re.compile(r"[A-Za-z0-9+/_=-]{40,}")
_MAX_CREDENTIAL_BYTES = 64 * 1024


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Credential:
    """A secret file by credential name; the contents are read only on demand, into a masked `Secret`."""

    name: str
    directory: Path | None

    @property
    def path(self) -> Path:
        env = {} if self.directory is None else {CREDENTIALS_ENV: str(self.directory)}
        return credential_path(self.name, env)

    def read(self) -> Secret[bytes]:
        path = self.path
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_CREDENTIAL_BYTES + 1)
        except OSError as err:
            raise KeyFileError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from err
        if len(data) > _MAX_CREDENTIAL_BYTES:
            raise KeyFileError(f"{path}: too large for a credential")
        return Secret(data)

    def describe(self) -> str:
        where = "<no credentials directory>" if self.directory is None else str(self.directory / self.name)
        return f"credential {self.name!r} at {where} (contents {MASK})"


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    unit_id: str | None = None
    crew_id: str | None = None
    test_mode: bool = False


@dataclass(frozen=True)
class ReaderConfig:
    name_filter: str | None = None
    extended_apdu: str = "auto"
    hang_s: float = 20.0


@dataclass(frozen=True)
class ConsentConfig:
    default: str = "none"
    window_s: float = 30.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class DisplayConfig:
    driver: str = "ssd1306"
    i2c_port: int = 1
    i2c_address: int = 0x3C
    rotate: int = 0
    result_clear_s: float = 60.0
    error_clear_s: float = 15.0
    frames_dir: Path | None = None


@dataclass(frozen=True)
class PanelConfig:
    enabled: bool = True
    pins_file: Path | None = None  # None: the pin map packaged with the firmware
    pin_factory: str = "auto"


@dataclass(frozen=True)
class SummaryConfig:
    url: str
    ca_file: Path
    client_cert: Path
    client_key: Credential
    timeout_s: float = 5.0
    retries: int = 2
    limit_s: float = 10.0

    def client(self) -> HttpsSummaryClient:
        from mynabox.adapters.summary_client import HttpsSummaryClient

        return HttpsSummaryClient(
            self.url,
            ca_file=self.ca_file,
            client_cert=self.client_cert,
            client_key=self.client_key.path,
            timeout_s=self.timeout_s,
            retries=self.retries,
            limit_s=self.limit_s,
        )


@dataclass(frozen=True)
class MqttConfig:
    host: str
    ca_file: Path
    client_cert: Path
    client_key: Credential
    port: int = 8883
    keepalive_s: int = 30
    window: int = 10

    def link_settings(self, device_id: str) -> LinkSettings:
        from mynabox.adapters.mqtt import LinkSettings

        return LinkSettings(
            host=self.host,
            port=self.port,
            device_id=device_id,
            ca=self.ca_file,
            cert=self.client_cert,
            key=self.client_key.path,
            keepalive_s=self.keepalive_s,
            window=self.window,
        )


@dataclass(frozen=True)
class SealingConfig:
    device_key: Credential
    gateway_public_key: Path
    max_message_bytes: int = 65536


@dataclass(frozen=True)
class StorageConfig:
    state_dir: Path = Path("/var/lib/mynabox")
    outbox_retention_h: int = 168


@dataclass(frozen=True)
class AuditConfig:
    key: Credential


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
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

    def masked_dict(self) -> dict[str, Any]:
        """Plain values for printing; credentials show their name and location, never their contents."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: object) -> Any:
    if isinstance(value, Credential):
        return value.describe()
    if isinstance(value, Secret):
        return MASK
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    return value


# --- parsing ---------------------------------------------------------------------------------------------


class _Required(enum.Enum):
    REQUIRED = enum.auto()


REQUIRED = _Required.REQUIRED
_SECTIONS = (
    "device",
    "reader",
    "consent",
    "display",
    "panel",
    "summary",
    "mqtt",
    "sealing",
    "storage",
    "audit",
    "log",
)
_REQUIRED_SECTIONS = frozenset({"device", "summary", "mqtt", "sealing", "audit"})


@dataclass(frozen=True)
class _FileCheck:
    key: str
    kind: str  # "file" | "private_key" | "public_key" | "audit_key" | "credential"
    path: Path | None = None
    credential: Credential | None = None


def _expand_home(value: str) -> Path | None:
    """`~` and `~user` expanded, or None when that home cannot be found (e.g. `~0`: no user named 0)."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        return None


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}
    return "a table" if isinstance(value, dict) else names.get(type(value), "a date/time")


def _looks_secret(value: str) -> bool:
    if _PEM.search(value):
        return True
    stripped = value.strip()
    return (
        _KEYLIKE.fullmatch(stripped) is not None
        and not stripped.startswith("/")
        and any(c.isdigit() for c in stripped)
        and any(c.isalpha() for c in stripped)
    )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"


class _Fields:
    """Typed reads from one TOML table; problems go into a shared list instead of being raised."""

    def __init__(self, section: str, table: Mapping[str, object], ctx: _Context) -> None:
        self._section = section
        self._table = table
        self._ctx = ctx
        self._seen: list[str] = []
        self._absent = section not in ctx.present  # a missing section is reported once, not key by key

    def _issue(self, key: str, problem: str, hint: str = "") -> None:
        self._ctx.issues.append(Issue(f"{self._section}.{key}", problem, hint))

    def _get(self, key: str) -> object:
        self._seen.append(key)
        return self._table.get(key, REQUIRED)

    def _usable(self, key: str, value: object) -> bool:
        """False when missing-and-required or already reported as a secret-looking value."""
        if f"{self._section}.{key}" in self._ctx.poisoned:
            return False
        if value is REQUIRED:
            if not self._absent:
                self._issue(key, "missing (required)")
            return False
        return True

    def finish(self) -> None:
        for key in self._table:
            if key not in self._seen:
                self._issue(key, "unknown key", _suggest(key, self._seen))

    def string(
        self,
        key: str,
        default: str | _Required = REQUIRED,
        *,
        pattern: re.Pattern[str] = _LABEL,
        hint: str = "",
    ) -> str:
        value = self._get(key)
        if value is REQUIRED and default is not REQUIRED:
            return default
        if not self._usable(key, value):
            return ""
        if not isinstance(value, str):
            self._issue(key, f"expected a string, got {_type_name(value)}")
            return ""
        if pattern.fullmatch(value) is None:
            self._issue(key, f"{_show(value)} is not allowed", hint)
            return ""
        return value

    def optional_string(self, key: str, *, pattern: re.Pattern[str] = _LABEL, hint: str = "") -> str | None:
        if key not in self._table:
            self._seen.append(key)
            return None
        return self.string(key, pattern=pattern, hint=hint)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is REQUIRED or f"{self._section}.{key}" in self._ctx.poisoned:
            return default
        if not isinstance(value, bool):
            self._issue(key, f"expected true or false, got {_type_name(value)}")
            return default
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(key)
        if value is REQUIRED:
            return default
        if not self._usable(key, value):
            return default
        if value not in choices:
            self._issue(key, f"{_show(value)} is not one of {', '.join(map(repr, choices))}")
            return default
        return str(value)

    def integer(
        self, key: str, default: int | _Required, lo: int, hi: int, *, problem: str = "", hint: str = ""
    ) -> int:
        value = self._get(key)
        if value is REQUIRED and default is not REQUIRED:
            return default
        if not self._usable(key, value):
            return lo
        if isinstance(value, str) and re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
            value = int(value, 16)  # "0x3c" as a string is how addresses are often written
        if isinstance(value, bool) or not isinstance(value, int):
            self._issue(key, f"expected an integer, got {_type_name(value)}")
            return lo
        if not lo <= value <= hi:
            self._issue(key, problem.format(value=value) or f"{value} is out of range ({lo}..{hi})", hint)
            return lo
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key)
        if value is REQUIRED or not self._usable(key, value):
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._issue(key, f"expected a number, got {_type_name(value)}")
            return default
        if not lo <= value <= hi:
            self._issue(key, f"{value} is out of range ({lo:g}..{hi:g})")
            return default
        return float(value)

    def path(self, key: str, default: Path | _Required = REQUIRED, *, check: str = "") -> Path:
        value = self._get(key)
        if value is REQUIRED and default is not REQUIRED:
            return default
        if not self._usable(key, value):
            return Path()
        if not isinstance(value, str) or not value:
            self._issue(key, f"expected a path string, got {_type_name(value)}")
            return Path()
        expanded = _expand_home(value)
        if expanded is None:
            self._issue(key, f"{value!r}: no such user's home directory", "write the path out in full")
            return Path()
        path = self._ctx.base_dir / expanded
        if check:
            self._ctx.file_checks.append(_FileCheck(f"{self._section}.{key}", check, path=path))
        return path

    def optional_path(self, key: str, *, check: str = "") -> Path | None:
        if key not in self._table:
            self._seen.append(key)
            return None
        return self.path(key, check=check)

    def credential(self, key: str, *, check: str = "credential") -> Credential:
        value = self._get(key)
        cred = Credential("invalid", self._ctx.credentials_dir)
        if not self._usable(key, value):
            return cred
        if not isinstance(value, str):
            self._issue(key, f"expected a credential name, got {_type_name(value)}")
            return cred
        try:
            credential_path(value, {CREDENTIALS_ENV: "/"})
        except KeyFileError:
            self._issue(key, f"{_show(value)} is not a credential name", "letters, digits, '_', '.', '-'")
            return cred
        cred = Credential(value, self._ctx.credentials_dir)
        self._ctx.file_checks.append(_FileCheck(f"{self._section}.{key}", check, credential=cred))
        return cred


@dataclass
class _Context:
    base_dir: Path
    credentials_dir: Path | None
    issues: list[Issue] = dataclasses.field(default_factory=list)
    poisoned: set[str] = dataclasses.field(default_factory=set)
    file_checks: list[_FileCheck] = dataclasses.field(default_factory=list)
    present: set[str] = dataclasses.field(default_factory=set)


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_ENV) or DEFAULT_PATH)


def load_config(
    path: Path | str | None = None, *, environ: Mapping[str, str] | None = None, check_files: bool = True
) -> Config:
    """Read and validate; raises `ConfigError` listing every problem found."""
    env = os.environ if environ is None else environ
    source = Path(path) if path is not None else default_path(env)
    try:
        text = source.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(str(source), [Issue("<file>", f"cannot read ({err.strerror})")]) from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(source), [Issue("<file>", "not UTF-8 text")]) from err
    return parse_config(text, source=source, environ=env, check_files=check_files)


def parse_config(
    text: str, *, source: Path, environ: Mapping[str, str] | None = None, check_files: bool = True
) -> Config:
    env = os.environ if environ is None else environ
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(source), [Issue("<toml>", f"syntax error: {err}")]) from None
    ctx = _Context(base_dir=source.parent, credentials_dir=None)
    _find_secrets(doc, "", ctx)

    dev_dir = doc.get("credentials_dir")
    if dev_dir is not None and not isinstance(dev_dir, str):
        ctx.issues.append(Issue("credentials_dir", f"expected a path string, got {_type_name(dev_dir)}"))
        dev_dir = None
    chosen = env.get(CREDENTIALS_ENV) or env.get(DEV_CREDENTIALS_ENV) or dev_dir
    expanded = _expand_home(chosen) if chosen else None
    if chosen and expanded is None:
        ctx.issues.append(Issue("credentials_dir", f"{chosen!r}: no such user's home directory"))
    ctx.credentials_dir = None if expanded is None else source.parent / expanded

    tables: dict[str, Mapping[str, object]] = {}
    for name, value in doc.items():
        if name == "credentials_dir":
            continue
        if name not in _SECTIONS:
            hint = _suggest(name, list(_SECTIONS))
            ctx.issues.append(
                Issue(name, "unknown section" if isinstance(value, dict) else "unknown key", hint)
            )
        elif not isinstance(value, dict):
            ctx.issues.append(Issue(name, f"expected a [{name}] table, got {_type_name(value)}"))
        else:
            tables[name] = value
    ctx.present = set(doc)
    for name in sorted(_REQUIRED_SECTIONS - tables.keys()):
        if name not in doc:
            ctx.issues.append(Issue(name, "missing section (required)", f"add a [{name}] table"))

    def fields(name: str) -> _Fields:
        return _Fields(name, tables.get(name, {}), ctx)

    config = _build(fields, source, ctx)
    if check_files:
        _check_files(ctx)
    if ctx.issues:
        raise ConfigError(str(source), ctx.issues)
    return config


def _find_secrets(table: Mapping[str, object], prefix: str, ctx: _Context) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _find_secrets(value, f"{dotted}.", ctx)
        elif isinstance(value, str) and _looks_secret(value):
            ctx.poisoned.add(dotted)
            ctx.issues.append(
                Issue(
                    dotted,
                    "looks like key material (value not shown)",
                    "secrets go in files named by credential (LoadCredential=), never in the config",
                )
            )


def _build(fields: Callable[[str], _Fields], source: Path, ctx: _Context) -> Config:
    f = fields("device")
    device = DeviceConfig(
        id=f.string("id", pattern=_DEVICE_ID, hint="lowercase letters, digits and '-', at most 32"),
        unit_id=f.optional_string("unit_id"),
        crew_id=f.optional_string("crew_id"),
        test_mode=f.boolean("test_mode", False),
    )
    f.finish()

    f = fields("reader")
    reader = ReaderConfig(
        name_filter=f.optional_string("name_filter"),
        extended_apdu=f.choice("extended_apdu", "auto", ("auto", "on", "off")),
        hang_s=f.number("hang_s", 20.0, 2.0, 600.0),
    )
    f.finish()

    f = fields("consent")
    consent = ConsentConfig(
        default=f.choice("default", "none", ("none", "oral", "emergency")),
        window_s=f.number("window_s", 30.0, 0.0, 3600.0),
        timeout_s=f.number("timeout_s", 60.0, 1.0, 3600.0),
    )
    f.finish()

    f = fields("display")
    display = DisplayConfig(
        driver=f.choice("driver", "ssd1306", ("ssd1306", "sh1106", "dummy")),
        i2c_port=f.integer("i2c_port", 1, 0, 31),
        i2c_address=f.integer(
            "i2c_address",
            0x3C,
            0x03,
            0x77,
            problem="{value:#04x} is not a 7-bit I2C address (0x03–0x77)",
            hint="SSD1306/SH1106 use 0x3c or 0x3d",
        ),
        rotate=f.integer("rotate", 0, 0, 3, hint="0-3 quarter turns"),
        result_clear_s=f.number("result_clear_s", 60.0, 1.0, 3600.0),
        error_clear_s=f.number("error_clear_s", 15.0, 1.0, 3600.0),
        frames_dir=f.optional_path("frames_dir"),
    )
    if display.frames_dir is not None and display.driver != "dummy":
        ctx.issues.append(Issue("display.frames_dir", "only used with driver = 'dummy'", "remove it"))
    f.finish()

    f = fields("panel")
    panel = PanelConfig(
        enabled=f.boolean("enabled", True),
        pins_file=f.optional_path("pins_file", check="file"),
        pin_factory=f.choice("pin_factory", "auto", ("auto", "mock")),
    )
    f.finish()

    f = fields("summary")
    url = f.string(
        "url", pattern=re.compile(r"https://[^\s/?#]+(/[^\s?#]*)?"), hint="https://host[:port][/prefix]"
    )
    summary = SummaryConfig(
        url=url,
        ca_file=f.path("ca_file", check="file"),
        client_cert=f.path("client_cert", check="file"),
        client_key=f.credential("client_key"),
        timeout_s=f.number("timeout_s", 5.0, 0.1, 120.0),
        retries=f.integer("retries", 2, 0, 10),
        limit_s=f.number("limit_s", 10.0, 1.0, 120.0),
    )
    f.finish()

    f = fields("mqtt")
    mqtt = MqttConfig(
        host=f.string(
            "host", pattern=re.compile(r"[A-Za-z0-9.:_-]{1,253}"), hint="a host name or IP address"
        ),
        port=f.integer("port", 8883, 1, 65535),
        ca_file=f.path("ca_file", check="file"),
        client_cert=f.path("client_cert", check="file"),
        client_key=f.credential("client_key"),
        keepalive_s=f.integer("keepalive_s", 30, 5, 3600),
        window=f.integer("window", 10, 1, 100),
    )
    f.finish()

    f = fields("sealing")
    sealing = SealingConfig(
        device_key=f.credential("device_key", check="private_key"),
        gateway_public_key=f.path("gateway_public_key", check="public_key"),
        max_message_bytes=f.integer("max_message_bytes", 65536, 1024, 1024 * 1024),
    )
    f.finish()

    f = fields("storage")
    storage = StorageConfig(
        state_dir=f.path("state_dir", Path("/var/lib/mynabox")),
        outbox_retention_h=f.integer("outbox_retention_h", 168, 1, 24 * 366),
    )
    f.finish()

    f = fields("audit")
    audit = AuditConfig(key=f.credential("key", check="audit_key"))
    f.finish()

    f = fields("log")
    log = LogConfig(level=f.choice("level", "info", ("debug", "info", "warning", "error")))
    f.finish()

    return Config(
        source,
        ctx.credentials_dir,
        device,
        reader,
        consent,
        display,
        panel,
        summary,
        mqtt,
        sealing,
        storage,
        audit,
        log,
    )


def _check_files(ctx: _Context) -> None:
    no_dir = ctx.credentials_dir is None
    if no_dir and any(c.credential is not None for c in ctx.file_checks):
        ctx.issues.append(
            Issue(
                "credentials_dir",
                f"no credentials directory (${CREDENTIALS_ENV} unset)",
                f"run under systemd with LoadCredential=, or set ${DEV_CREDENTIALS_ENV} for development",
            )
        )
    for check in ctx.file_checks:
        if check.credential is not None and no_dir:
            continue  # reported once above
        try:
            path = check.credential.path if check.credential is not None else check.path or Path()
            if check.kind == "private_key":
                load_private_key(path)
            elif check.kind == "public_key":
                load_public_key(path)
            elif check.kind == "audit_key":
                load_audit_key(path)
            elif not path.is_file():
                raise KeyFileError(
                    f"{path}: not found" if not path.exists() else f"{path}: not a regular file"
                )
            elif not os.access(path, os.R_OK):
                raise KeyFileError(f"{path}: not readable")
        except KeyFileError as err:
            ctx.issues.append(Issue(check.key, str(err)))
