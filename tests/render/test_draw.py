"""Golden images of every screen, glyph coverage and fitting (MYNABOX_UPDATE_GOLDEN=1 rewrites goldens)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from mynabox.core.screens import Screen
from mynabox.render import fonts
from mynabox.render.catalog import catalog
from mynabox.render.draw import HEIGHT, WIDTH, _fit, render

GOLDEN = Path(__file__).parent / "golden"
SCREENS = catalog()


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_matches_golden(name: str) -> None:
    image = render(SCREENS[name])
    assert image.mode == "1" and image.size == (WIDTH, HEIGHT)
    path = GOLDEN / f"{name}.png"
    if os.environ.get("MYNABOX_UPDATE_GOLDEN"):
        image.save(path)
    expected = Image.open(path).convert("1")
    diff = ImageChops.difference(image.convert("L"), expected.convert("L")).getbbox()
    assert diff is None, f"{name} differs from its golden image in {diff}"


def _chars(screen: Screen) -> set[str]:
    return set(screen.header + "".join(screen.lines) + screen.status.text())


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_every_character_has_a_glyph(name: str) -> None:
    screen = SCREENS[name]
    body_font = fonts.small() if screen.small else fonts.big()
    missing = [c for c in set("".join(screen.lines)) if not fonts.has_glyph(body_font, c)]
    missing += [c for c in set(screen.header + screen.status.text()) if not fonts.has_glyph(fonts.small(), c)]
    assert not missing, f"{name}: no glyph for {missing}"


def test_tofu_is_detected() -> None:
    assert not fonts.has_glyph(fonts.big(), "\U0001f691")  # an ambulance emoji: not in unifont's BMP file


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_lines_fit_without_ellipsis(name: str) -> None:
    screen = SCREENS[name]
    font = fonts.small() if screen.small else fonts.big()
    for line in screen.lines:
        assert _fit(line, font) == line, f"{name}: {line!r} is cut"


def test_fit_cuts_with_ellipsis() -> None:
    assert _fit("あ" * 20, fonts.big()).endswith("…")
    assert fonts.big().getlength(_fit("あ" * 20, fonts.big())) <= WIDTH


def test_the_font_files_are_not_kept_mapped() -> None:
    """Glyphs are kept, not the font files: FreeType maps a whole file and the glyphs it reads bring their
    neighbourhood into the daemon's RSS (unifont's 5 MB had put 1.3 MB there). In a fresh interpreter, so no
    other test's font is open."""
    script = (
        "from pathlib import Path\n"
        "from mynabox.render import fonts\n"
        "from mynabox.render.catalog import catalog\n"
        "from mynabox.render.draw import render\n"
        "for screen in catalog().values():\n"
        "    render(screen)\n"
        "maps = Path('/proc/self/maps').read_text()\n"
        "print(sum(str(f.path) in maps for f in (fonts.big(), fonts.small())))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "0"
