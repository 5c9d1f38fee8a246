"""The rig description (`hw/bench/rig.toml`): what the bench has, and how to reach it.

Plain TOML a technician edits: every problem is reported at once, unknown keys are errors (a typo must not
silently skip a check), and parts the rig lacks are listed so their checks are skipped with the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "limits": set(),  # checked against the measurement names by the suite
    "virtual": {"device_id", "faults"},
}


_BENCH_FILES = _KEYS["bench"] - {"broker", "summary_url"}


class RigError(Exception):
    """The rig file is missing or wrong; the message lists every problem."""


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


def load_rig(path: Path) -> Rig:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise RigError(f"rig file {path}: {err}") from err
    problems = [f"unknown section [{s}]" for s in doc if s not in _KEYS]
    for section, keys in _KEYS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"[{section}] must be a table")
            continue
        if section != "limits":
            problems += [f"{section}.{k}: unknown key" for k in table if k not in keys]
    base = path.parent

    def text(section: str, key: str, default: str | None = None) -> str | None:
        value = doc.get(section, {}).get(key, default)
        if value is not None and not isinstance(value, str):
            problems.append(f"{section}.{key}: expected a string")
            return default
        return value

    def file(section: str, key: str) -> Path | None:
        value = text(section, key)
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else (base / p).resolve()

    mode = text("rig", "mode", "hardware")
    if mode not in ("hardware", "virtual"):
        problems.append('rig.mode: expected "hardware" or "virtual"')
    technician = text("rig", "technician")
    if not technician:
        problems.append("rig.technician: who runs the bench (their id goes into every answer)")
    parts_table = doc.get("parts", {})
    parts = {}
    for part in PARTS:
        value = parts_table.get(part, part != "watchdog")
        if not isinstance(value, bool):
            problems.append(f"parts.{part}: expected true or false")
        parts[part] = bool(value)
    oled = doc.get("oled", {})
    address = oled.get("address", 0x3C)
    if address not in (0x3C, 0x3D):
        problems.append("oled.address: expected 0x3c or 0x3d")
    controller = text("oled", "controller", "ssd1306")
    if controller not in ("ssd1306", "sh1106") and mode != "virtual":
        problems.append('oled.controller: expected "ssd1306" or "sh1106"')
    timeout = doc.get("operator", {}).get("timeout_s", 60.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 600:
        problems.append("operator.timeout_s: expected seconds, 0-600")
        timeout = 60.0
    read_timeout = doc.get("reader", {}).get("read_timeout_s", 10.0)
    if (
        not isinstance(read_timeout, int | float)
        or isinstance(read_timeout, bool)
        or not 0 < read_timeout <= 60
    ):
        problems.append("reader.read_timeout_s: expected seconds, 0-60")
        read_timeout = 10.0
    limits: dict[str, dict[str, float]] = {}
    for name, table in doc.get("limits", {}).items():
        if not isinstance(table, dict) or any(
            k not in ("low", "high", "marginal_low", "marginal_high")
            or not isinstance(v, int | float)
            or isinstance(v, bool)
            for k, v in table.items()
        ):
            problems.append(f"limits.{name}: expected low/high/marginal_low/marginal_high numbers")
            continue
        limits[name] = {k: float(v) for k, v in table.items()}
    faults = doc.get("virtual", {}).get("faults", [])
    if not isinstance(faults, list) or any(f not in VIRTUAL_FAULTS for f in faults):
        problems.append(f"virtual.faults: a list of {', '.join(VIRTUAL_FAULTS)}")
        faults = []
    bench: dict[str, Path] = {}
    for key in sorted(_BENCH_FILES):
        found = file("bench", key)
        if found is not None:
            bench[key] = found
    box_config = file("box", "config")
    bench_broker, bench_summary = text("bench", "broker"), text("bench", "summary_url")
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
        raise RigError(f"rig file {path}: " + "; ".join(problems))
    return Rig(
        path=path,
        name=text("rig", "name", path.stem) or path.stem,
        technician=technician or "",
        mode=mode or "hardware",
        parts=parts,
        box_config=box_config,
        serial=text("box", "serial"),
        reader_name=text("reader", "name"),
        test_card=text("reader", "test_card", "the JPKI test card") or "",
        other_card=text("reader", "other_card", "a card that is not a My Number Card") or "",
        oled_controller=controller or "ssd1306",
        oled_address=int(address),
        oled_port=int(oled.get("port", 1)),
        pins_file=file("pins", "file"),
        bench=bench,
        bench_broker=bench_broker,
        bench_summary=bench_summary,
        operator_timeout_s=float(timeout),
        read_timeout_s=float(read_timeout),
        limits=limits,
        device_id=text("virtual", "device_id", "amb-virtual-01") or "amb-virtual-01",
        faults=tuple(faults),
        raw=doc,
    )
