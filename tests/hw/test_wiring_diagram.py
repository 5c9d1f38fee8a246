"""hw/wiring.png is the pin map drawn by hw/wiring_diagram.py: a fresh render must equal the committed file,
so the picture cannot drift from the data the firmware reads (re-run the script after changing pins.toml)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from PIL import Image, ImageChops

from mynabox.adapters.panel import load_pin_map

ROOT = Path(__file__).resolve().parents[2]


def diagram() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wiring_diagram", ROOT / "hw/wiring_diagram.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_wiring_diagram_is_a_fresh_render_of_the_pin_map() -> None:
    fresh = diagram().render(load_pin_map())
    committed = Image.open(ROOT / "hw/wiring.png").convert("RGB")
    assert committed.size == fresh.size
    assert ImageChops.difference(committed, fresh).getbbox() is None, (
        "hw/wiring.png is stale: run `.venv/bin/python hw/wiring_diagram.py`"
    )


def test_the_diagram_follows_the_pin_map() -> None:
    module = diagram()
    pins = load_pin_map()
    moved = replace(pins, consent=5)
    assert ImageChops.difference(module.render(pins), module.render(moved)).getbbox() is not None
    consent_row = next(r for r in module.rows(moved) if r[1][0].startswith("同意"))
    assert consent_row[0] == "pin 29  GPIO5"
