"""Loading the config file: one TOML file parsed into frozen dataclasses, every problem reported at once.

Path: ``--config``, else ``$MYNABOX_CONFIG``, else ``/etc/mynabox/config.toml``. Relative paths in the
file are taken relative to the file's directory. Secrets never live in the TOML: a key names a *credential*,
a file in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``), or for development in
``$MYNABOX_CREDENTIALS_DIR`` or the top-level ``credentials_dir`` key. A value that looks like key material
(PEM, long base64/hex) is an error, and its text is never echoed; nor is any value, key name or path that
could hold key material (`fields.may_be_secret`). The file is read bounded and only if it is a regular file;
the files it names are checked together by `adapters.identity.check_identity` (permissions, parsed, each TLS
key matched to its certificate).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from mynabox.adapters.identity import FileKind, IdentityFile, check_identity, check_permissions
from mynabox.adapters.keyfiles import CREDENTIALS_ENV, read_small_file
from mynabox.config.fields import (
    CONTROL_IN_PATH,
    Context,
    Fields,
    expand_home,
    has_control,
    label,
    looks_secret,
    may_be_secret,
    show,
    suggest,
    type_name,
)
from mynabox.config.model import (
    AuditConfig,
    Config,
    ConfigError,
    ConsentConfig,
    DefaultConsent,
    DeviceConfig,
    DisplayConfig,
    DisplayDriver,
    ExtendedApdu,
    Issue,
    LogConfig,
    LogLevel,
    MqttConfig,
    PanelConfig,
    PinFactory,
    ReaderConfig,
    SealingConfig,
    StorageConfig,
    SummaryConfig,
    UpdateConfig,
)
from mynabox.payload.envelope import (
    DEVICE_ID_HINT,
    DEVICE_ID_PATTERN,
    MAX_MESSAGE_BYTES,
    MIN_MESSAGE_BYTES,
)
from mynabox.payload.keys import KeyFileError
from mynabox.tls import TlsFilesError, client_context

DEFAULT_PATH = Path("/etc/mynabox/config.toml")
CONFIG_ENV = "MYNABOX_CONFIG"
DEV_CREDENTIALS_ENV = "MYNABOX_CREDENTIALS_DIR"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_URL = re.compile(r"https://[^\s/?#\x00-\x1f\x7f]+(/[^\s?#\x00-\x1f\x7f]*)?")  # no NUL or other controls
_COMMAND = re.compile(r"/[!-~]{1,200}( [!-~]{1,200}){0,8}")  # printable, no controls or shell
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
    "update",
)
_REQUIRED_SECTIONS = frozenset({"device", "summary", "mqtt", "sealing", "audit"})
MAX_CONFIG_BYTES = 256 * 1024  # the example is ≈ 6 kB
MAX_DEPTH = 8  # section.key = [array]: 3 levels are used
# What each `check=` of a config field means for `check_identity`.
FILE_KINDS = {
    "file": FileKind.FILE,
    "ca": FileKind.CA,
    "cert": FileKind.CERT,
    "tls_key": FileKind.TLS_KEY,
    "private_key": FileKind.DEVICE_KEY,
    "public_key": FileKind.GATEWAY_KEY,
    "audit_key": FileKind.AUDIT_KEY,
    "credential": FileKind.SECRET,
}
_PATH_HIDDEN = "(path not shown: it could hold key material)"


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
        data = read_small_file(source, limit=MAX_CONFIG_BYTES, what="a config file")
        text = data.decode("utf-8")
    except KeyFileError as err:
        problem = str(err).removeprefix(f"{source}: ")
        raise ConfigError(str(source), [Issue("<file>", problem)]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(source), [Issue("<file>", "not UTF-8 text")]) from None
    unsafe = check_permissions(source, secret=False, shown="the config file")
    if unsafe is not None:
        raise ConfigError(str(source), [Issue("<file>", unsafe.removeprefix("the config file: "))])
    return parse_config(text, source=source, environ=env, check_files=check_files)


def parse_config(
    text: str, *, source: Path, environ: Mapping[str, str] | None = None, check_files: bool = True
) -> Config:
    env = os.environ if environ is None else environ
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(str(source), [Issue("<file>", f"too large (more than {MAX_CONFIG_BYTES} bytes)")])
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(source), [Issue("<toml>", f"syntax error: {_syntax(err)}")]) from None
    except RecursionError:
        raise ConfigError(str(source), [_TOO_DEEP]) from None
    except ValueError:  # tomllib's int() of more digits than Python converts (sys.get_int_max_str_digits())
        raise ConfigError(str(source), [_TOO_LONG_NUMBER]) from None
    if _depth(doc) > MAX_DEPTH:
        raise ConfigError(str(source), [_TOO_DEEP])
    ctx = Context(base_dir=source.parent, credentials_dir=None)
    _find_secrets(doc, "", "", ctx)

    dev_dir = None if "credentials_dir" in ctx.poisoned else doc.get("credentials_dir")
    if dev_dir is not None and not isinstance(dev_dir, str):
        ctx.issues.append(Issue("credentials_dir", f"expected a path string, got {type_name(dev_dir)}"))
        dev_dir = None
    if isinstance(dev_dir, str) and has_control(dev_dir):
        ctx.issues.append(Issue("credentials_dir", CONTROL_IN_PATH))
        dev_dir = None
    chosen = env.get(CREDENTIALS_ENV) or env.get(DEV_CREDENTIALS_ENV) or dev_dir
    expanded = expand_home(chosen) if chosen else None
    if chosen and expanded is None:
        ctx.issues.append(Issue("credentials_dir", f"{show(chosen)}: no such user's home directory"))
    ctx.credentials_dir = None if expanded is None else source.parent / expanded

    tables: dict[str, Mapping[str, object]] = {}
    for name, value in doc.items():
        if name == "credentials_dir":
            continue
        if name in ctx.poisoned:
            continue  # reported as key material
        if name not in _SECTIONS:
            hint = suggest(name, list(_SECTIONS))
            ctx.issues.append(
                Issue(label(name), "unknown section" if isinstance(value, dict) else "unknown key", hint)
            )
        elif not isinstance(value, dict):
            ctx.issues.append(Issue(name, f"expected a [{name}] table, got {type_name(value)}"))
        else:
            tables[name] = value
    ctx.present = set(doc)
    for name in sorted(_REQUIRED_SECTIONS - tables.keys()):
        if name not in doc:
            ctx.issues.append(Issue(name, "missing section (required)", f"add a [{name}] table"))

    def fields(name: str, model: type) -> Fields:
        return Fields(name, tables.get(name, {}), ctx, model)

    config = _build(fields, source, ctx)
    if check_files:
        _check_files(ctx)
        _check_tls(config, ctx)
    if ctx.issues:
        raise ConfigError(str(source), ctx.issues)
    return config


_TOO_DEEP = Issue("<toml>", f"nested more than {MAX_DEPTH} levels deep (tables or arrays inside each other)")
_TOO_LONG_NUMBER = Issue("<toml>", "a number too long to convert (more than 4300 digits)")
_SECRET_HINT = "secrets go in files named by credential (LoadCredential=), never in the config"  # noqa: S105


def _syntax(err: tomllib.TOMLDecodeError) -> str:
    """tomllib's message, unless it quotes something that could be key material (e.g. a repeated table
    name): then only where the error is."""
    message = str(err)
    if not may_be_secret(message):
        return message
    where = re.search(r"\(at (line \d+, column \d+|end of document)\)$", message)
    return f"invalid TOML {where.group(0) if where else ''}".strip()


def _depth(doc: object) -> int:
    """How deep tables and arrays nest, without recursion (a document may nest thousands deep)."""
    deepest, todo = 0, [(doc, 0)]
    while todo:
        value, depth = todo.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        if isinstance(value, dict):
            todo += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            todo += [(v, depth + 1) for v in value]
    return deepest


def _find_secrets(table: object, dotted: str, shown: str, ctx: Context) -> None:
    """Values, array items and key names that look like key material: reported once, never shown."""
    items = table.items() if isinstance(table, dict) else enumerate(table) if isinstance(table, list) else ()
    for key, value in items:
        if isinstance(key, str):
            key_dotted, key_shown = f"{dotted}{key}", f"{shown}{label(key)}"
            if may_be_secret(key):
                ctx.poisoned.add(key_dotted)
                problem = "a key name that looks like key material (not shown)"
                ctx.issues.append(Issue(key_shown, problem, _SECRET_HINT))
                continue
        else:
            key_dotted, key_shown = f"{dotted.removesuffix('.')}[{key}]", f"{shown.removesuffix('.')}[{key}]"
        if isinstance(value, dict):
            _find_secrets(value, f"{key_dotted}.", f"{key_shown}.", ctx)
        elif isinstance(value, list):
            _find_secrets(value, key_dotted, key_shown, ctx)
        elif isinstance(value, str) and looks_secret(value):
            ctx.poisoned.add(key_dotted)
            ctx.issues.append(Issue(key_shown, "looks like key material (value not shown)", _SECRET_HINT))


def _build(fields: Callable[[str, type], Fields], source: Path, ctx: Context) -> Config:
    f = fields("device", DeviceConfig)
    device = DeviceConfig(
        id=f.string("id", pattern=_DEVICE_ID, hint=DEVICE_ID_HINT),
        unit_id=f.optional_string("unit_id"),
        crew_id=f.optional_string("crew_id"),
        test_mode=f.boolean("test_mode"),
    )
    f.finish()

    f = fields("reader", ReaderConfig)
    reader = ReaderConfig(
        name_filter=f.optional_string("name_filter"),
        extended_apdu=f.choice("extended_apdu", ExtendedApdu),
        hang_s=f.number("hang_s", 2.0, 600.0),
    )
    f.finish()

    f = fields("consent", ConsentConfig)
    consent = ConsentConfig(
        default=f.choice("default", DefaultConsent),
        window_s=f.number("window_s", 0.0, 3600.0),
        timeout_s=f.number("timeout_s", 1.0, 3600.0),
    )
    f.finish()

    f = fields("display", DisplayConfig)
    display = DisplayConfig(
        driver=f.choice("driver", DisplayDriver),
        i2c_port=f.integer("i2c_port", 0, 31),
        i2c_address=f.integer(
            "i2c_address",
            0x03,
            0x77,
            problem="{value:#04x} is not a 7-bit I2C address (0x03–0x77)",
            hint="SSD1306/SH1106 use 0x3c or 0x3d",
        ),
        rotate=f.integer("rotate", 0, 3, hint="0-3 quarter turns"),
        result_clear_s=f.number("result_clear_s", 1.0, 3600.0),
        error_clear_s=f.number("error_clear_s", 1.0, 3600.0),
        frames_dir=f.optional_path("frames_dir"),
    )
    if display.frames_dir is not None and display.driver is not DisplayDriver.DUMMY:
        ctx.issues.append(Issue("display.frames_dir", "only used with driver = 'dummy'", "remove it"))
    f.finish()

    f = fields("panel", PanelConfig)
    panel = PanelConfig(
        enabled=f.boolean("enabled"),
        pins_file=f.optional_path("pins_file", check="file"),
        pin_factory=f.choice("pin_factory", PinFactory),
    )
    f.finish()

    f = fields("summary", SummaryConfig)
    url_hint = "https://host[:port][/prefix]"
    url = f.string("url", pattern=_URL, hint=url_hint)
    if url and not _host_and_port(url):
        ctx.issues.append(Issue("summary.url", f"{show(url)} has a bad host or port", url_hint))
    summary = SummaryConfig(
        url=url,
        ca_file=f.path("ca_file", check="ca"),
        client_cert=f.path("client_cert", check="cert"),
        client_key=f.credential("client_key", check="tls_key", matches="client_cert"),
        timeout_s=f.number("timeout_s", 0.1, 120.0),
        retries=f.integer("retries", 0, 10),
        limit_s=f.number("limit_s", 1.0, 120.0),
        keepalive_s=f.number("keepalive_s", 0.0, 3600.0),
    )
    f.finish()

    f = fields("mqtt", MqttConfig)
    mqtt = MqttConfig(
        host=f.string(
            "host", pattern=re.compile(r"[A-Za-z0-9.:_-]{1,253}"), hint="a host name or IP address"
        ),
        port=f.integer("port", 1, 65535),
        ca_file=f.path("ca_file", check="ca"),
        client_cert=f.path("client_cert", check="cert"),
        client_key=f.credential("client_key", check="tls_key", matches="client_cert"),
        keepalive_s=f.integer("keepalive_s", 5, 3600),
        window=f.integer("window", 1, 100),
    )
    f.finish()

    f = fields("sealing", SealingConfig)
    sealing = SealingConfig(
        device_key=f.credential("device_key", check="private_key"),
        gateway_public_key=f.path("gateway_public_key", check="public_key"),
        max_message_bytes=f.integer("max_message_bytes", MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES),
    )
    f.finish()

    f = fields("storage", StorageConfig)
    storage = StorageConfig(
        state_dir=f.path("state_dir"),
        outbox_retention_h=f.integer("outbox_retention_h", 1, 24 * 366),
    )
    f.finish()

    f = fields("audit", AuditConfig)
    audit = AuditConfig(key=f.credential("key", check="audit_key"))
    f.finish()

    f = fields("log", LogConfig)
    log = LogConfig(level=f.choice("level", LogLevel))
    f.finish()

    f = fields("update", UpdateConfig)
    update = UpdateConfig(
        idle_min=f.number("idle_min", 0.0, 24 * 60.0),
        boot_dir=f.path("boot_dir"),
        cmdline=f.path("cmdline"),
        reboot_command=f.string(
            "reboot_command", pattern=_COMMAND, hint="an absolute program path and its arguments"
        ),
    )
    f.retired("health_limit_min", "mynabox-health.service's MYNABOX_HEALTH_LIMIT_S sets the limit")
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
        update,
    )


def _host_and_port(url: str) -> bool:
    """The URL splits into a host and a port (default or 1-65535) as the summary client will split it."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:  # also an unclosed IPv6 bracket
        return False
    return bool(parts.hostname)


def _check_files(ctx: Context) -> None:
    no_dir = ctx.credentials_dir is None
    if no_dir and any(c.credential is not None for c in ctx.file_checks):
        ctx.issues.append(
            Issue(
                "credentials_dir",
                f"no credentials directory (${CREDENTIALS_ENV} unset)",
                f"run under systemd with LoadCredential=, or set ${DEV_CREDENTIALS_ENV} for development",
            )
        )
    files: list[IdentityFile] = []
    for check in ctx.file_checks:
        if check.credential is not None and no_dir:
            continue  # reported once above
        try:
            path = check.credential.path if check.credential is not None else check.path or Path()
        except KeyFileError as err:
            ctx.issues.append(Issue(check.key, str(err)))
            continue
        shown = _PATH_HIDDEN if may_be_secret(str(path)) else None
        files.append(IdentityFile(check.key, path, FILE_KINDS[check.kind], shown))
    ctx.issues += [Issue(r.role, r.problem) for r in check_identity(files, ctx.pairs)]


def _check_tls(config: Config, ctx: Context) -> None:
    """Build the two TLS contexts as the daemon will (`mynabox.tls`, which the link and the summary client
    use), once their files passed: OpenSSL refuses some material that parses (e.g. a chain certificate whose
    key is too small for its security level), and that must fail here, not at the daemon's start."""
    if ctx.credentials_dir is None:
        return  # reported: the keys cannot be found
    flagged = {issue.key.split(".", 1)[0] for issue in ctx.issues}
    for section, files in (("mqtt", config.mqtt), ("summary", config.summary)):
        if section in flagged:
            continue  # its files are refused already
        try:
            client_context(files.ca_file, files.client_cert, files.client_key.path)
        except TlsFilesError as err:
            reason = getattr(err.cause, "reason", None) or type(err.cause).__name__  # a code, never contents
            ctx.issues.append(
                Issue(section, f"OpenSSL refuses its TLS files (ca_file, client_cert, client_key): {reason}")
            )
