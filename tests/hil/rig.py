"""The rig description (`hw/bench/rig.toml`): what the bench has, and how to reach it.

Plain TOML a technician edits: every problem is reported at once, unknown keys are errors (a typo must not
silently skip a check), and parts the rig lacks are listed so their checks are skipped with the reason.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mynabox.payload.envelope import DEVICE_ID_HINT, is_device_id

from .measure import DEFAULT_LIMITS

PARTS = ("reader", "oled", "buttons", "led", "buzzer", "broker", "summary", "watchdog")
VIRTUAL_FAULTS = ("swapped-buttons", "dead-led", "dead-oled", "silent-technician", "silent-card")

_KEYS: dict[str, set[str]] = {
    "rig": {"name", "technician", "mode"},
    "box": {"config", "serial"},
    "reader": {"name", "test_card", "other_card", "read_timeout_s"},
    "oled": {"controller", "address", "port"},
    "pins": {"file"},
    "parts": set(PARTS),
    "bench": {
        "broker",
        "summary_url",
        "gateway_ca",
        "gateway_cert",
        "gateway_key",
        "gateway_envelope_key",
        "device_keys_dir",
    },
    "operator": {"timeout_s"},
    "limits": set(),  # one table per measurement name (measure.DEFAULT_LIMITS)
    "virtual": {"device_id", "faults"},
}


_BENCH_FILES = _KEYS["bench"] - {"broker", "summary_url"}


class RigError(Exception):
    """The rig file is missing or wrong; the message lists every problem (``problems``: one each)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class Rig:
    path: Path
    name: str
    technician: str
    mode: str  # "hardware" or "virtual"
    parts: dict[str, bool]
    box_config: Path | None
    serial: str | None
    reader_name: str | None
    test_card: str
    other_card: str
    oled_controller: str
    oled_address: int
    oled_port: int
    pins_file: Path | None
    bench: dict[str, Path]
    operator_timeout_s: float
    read_timeout_s: float
    limits: dict[str, dict[str, float]]
    bench_broker: str | None = None  # "host:port" the box's config must name
    bench_summary: str | None = None  # the summary service URL the box's config must name
    device_id: str = "amb-virtual-01"
    faults: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def virtual(self) -> bool:
        return self.mode == "virtual"

    def has(self, part: str) -> bool:
        return self.parts.get(part, False)

    def describe(self) -> dict[str, Any]:
        """For the report: the file as the technician wrote it, and where it was."""
        return {"file": str(self.path), **self.raw}


MAX_RIG_BYTES = 256 * 1024  # a rig file is a page of settings
_MAX_TEXT = 4096
_LIMIT_KEYS = ("low", "high", "marginal_low", "marginal_high")


def load_rig(path: Path) -> Rig:
    """Read and check a rig file; every problem of it in one :class:`RigError`."""
    try:
        if not path.is_file():  # a FIFO or a directory would hang or fail later
            raise RigError(f"rig file {path}: not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_RIG_BYTES + 1)
    except (OSError, ValueError) as err:
        raise RigError(f"rig file {path}: cannot read ({type(err).__name__}: {err})") from err
    if len(data) > MAX_RIG_BYTES:
        raise RigError(f"rig file {path}: larger than {MAX_RIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RigError(f"rig file {path}: not UTF-8 ({err.reason} at byte {err.start})") from err
    return parse_rig(text, path)


def parse_rig(source: str, path: Path) -> Rig:
    """Check a rig file's text (``path`` names it and anchors its relative paths)."""
    try:
        doc = tomllib.loads(source)
    except tomllib.TOMLDecodeError as err:
        raise RigError(f"rig file {path}: not TOML ({err})") from err
    except (ValueError, RecursionError) as err:  # a 5,000-digit integer, nesting deeper than the stack
        raise RigError(f"rig file {path}: not TOML ({type(err).__name__})") from err
    problems = [f"unknown section [{_show(s)}]" for s in doc if s not in _KEYS]
    tables: dict[str, dict[str, Any]] = {}
    for section, keys in _KEYS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"{section}: must be a table ([{section}]), not a {_kind(table)}")
            table = {}
        tables[section] = table
        if section != "limits":
            problems += [f"{section}.{_show(k)}: unknown key" for k in table if k not in keys]
    base = path.parent

    def text(section: str, key: str, default: str | None = None) -> str | None:
        value = tables[section].get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            problems.append(f"{section}.{key}: expected a string, not a {_kind(value)}")
            return default
        if len(value) > _MAX_TEXT or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            problems.append(f"{section}.{key}: expected one line of at most {_MAX_TEXT} characters")
            return default
        return value

    def file(section: str, key: str) -> Path | None:
        value = text(section, key)
        if value is None:
            return None
        try:
            p = Path(value)
            return p if p.is_absolute() else (base / p).resolve()
        except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a name the system refuses
            problems.append(f"{section}.{key}: not a usable path ({type(err).__name__})")
            return None

    def number(section: str, key: str, default: float, high: float) -> float:
        value = tables[section].get(key, default)
        if not _finite(value) or not 0 < value <= high:
            problems.append(f"{section}.{key}: expected seconds, more than 0 and at most {high:g}")
            return default
        return float(value)

    def integer(section: str, key: str, default: int, allowed: range, hint: str) -> int:
        value = tables[section].get(key, default)
        if type(value) is not int or value not in allowed:
            problems.append(f"{section}.{key}: expected {hint}")
            return default
        return value

    mode = text("rig", "mode", "hardware")
    if mode not in ("hardware", "virtual"):
        problems.append('rig.mode: expected "hardware" or "virtual"')
        mode = "hardware"
    name = text("rig", "name")
    technician = text("rig", "technician")
    if not technician:
        problems.append("rig.technician: who runs the bench (their id goes into every answer)")
    parts = {}
    for part in PARTS:
        value = tables["parts"].get(part, part != "watchdog")
        if not isinstance(value, bool):
            problems.append(f"parts.{part}: expected true or false")
            value = False
        parts[part] = value
    address = integer("oled", "address", 0x3C, range(0x3C, 0x3E), "0x3c or 0x3d")
    port = integer("oled", "port", 1, range(0, 256), "the I2C bus number, 0-255 (/dev/i2c-N)")
    controller = text("oled", "controller", "ssd1306")
    if controller not in ("ssd1306", "sh1106") and mode != "virtual":
        problems.append('oled.controller: expected "ssd1306" or "sh1106"')
    timeout = number("operator", "timeout_s", 60.0, 600)
    read_timeout = number("reader", "read_timeout_s", 10.0, 60)
    limits: dict[str, dict[str, float]] = {}
    for limit, table in tables["limits"].items():
        if limit not in DEFAULT_LIMITS:
            problems.append(f"limits.{_show(limit)}: no such measurement ({', '.join(DEFAULT_LIMITS)})")
        elif not isinstance(table, dict) or any(
            k not in _LIMIT_KEYS or not _finite(v) for k, v in table.items()
        ):
            problems.append(
                f"limits.{limit}: expected a table of low/high/marginal_low/marginal_high numbers"
            )
        elif table.get("low", -math.inf) > table.get("high", math.inf):
            problems.append(f"limits.{limit}: low is above high")
        else:
            limits[limit] = {k: float(v) for k, v in table.items()}
    faults = tables["virtual"].get("faults", [])
    if not isinstance(faults, list) or any(not isinstance(f, str) or f not in VIRTUAL_FAULTS for f in faults):
        problems.append(f"virtual.faults: a list of {', '.join(VIRTUAL_FAULTS)}")
        faults = []
    device_id = text("virtual", "device_id", "amb-virtual-01") or "amb-virtual-01"
    if not is_device_id(device_id):
        problems.append(f"virtual.device_id: expected {DEVICE_ID_HINT}")
    bench: dict[str, Path] = {}
    for key in sorted(_BENCH_FILES):
        found = file("bench", key)
        if found is not None:
            bench[key] = found
    box_config = file("box", "config")
    pins_file = file("pins", "file")
    bench_broker, bench_summary = text("bench", "broker"), text("bench", "summary_url")
    if bench_broker is not None and not _host_port(bench_broker):
        problems.append('bench.broker: expected "host:port" (port 1-65535)')
    strings = {k: text("reader", k) for k in ("name", "test_card", "other_card")}
    serial = text("box", "serial")
    if mode == "hardware":
        if box_config is None:
            problems.append("box.config: the box's config.toml (its device id, certificates, broker)")
        if parts["broker"] and len(bench) < len(_BENCH_FILES):
            missing = sorted(_BENCH_FILES - set(bench))
            problems.append(f"bench: the gateway side of the bench broker needs {', '.join(missing)}")
        if parts["broker"] and not bench_broker:
            problems.append('bench.broker: the bench broker as "host:port" (the box must point at it)')
        if parts["summary"] and not bench_summary:
            problems.append("bench.summary_url: the bench summary service (the box must point at it)")
    if problems:
        raise RigError(f"rig file {path}: {len(problems)} problem(s): " + "; ".join(problems), problems)
    return Rig(
        path=path,
        name=name or path.stem,
        technician=technician or "",
        mode=mode,
        parts=parts,
        box_config=box_config,
        serial=serial,
        reader_name=strings["name"],
        test_card=strings["test_card"] or "the JPKI test card",
        other_card=strings["other_card"] or "a card that is not a My Number Card",
        oled_controller=controller or "ssd1306",
        oled_address=address,
        oled_port=port,
        pins_file=pins_file,
        bench=bench,
        bench_broker=bench_broker,
        bench_summary=bench_summary,
        operator_timeout_s=timeout,
        read_timeout_s=read_timeout,
        limits=limits,
        device_id=device_id,
        faults=tuple(faults),
        raw=doc,
    )


def _host_port(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and not any(c.isspace() for c in host) and port.isdigit() and 0 < int(port) < 65536


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )


def _show(key: str) -> str:
    """A key as the file wrote it, shortened and with controls escaped (it goes into a message)."""
    shown = key.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 40 else shown[:40] + "…"
