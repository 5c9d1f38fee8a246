"""The OLED's bitmap fonts, from Debian's packages: unifont (16 px) and misaki gothic (8 px).

Both are pixel fonts drawn without antialiasing, so they are crisp on a 1-bit OLED: 16 px for the
instruction the crew must read at arm's length, 8 px only for the header and status line.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BIG_CANDIDATES = (
    "/usr/share/fonts/opentype/unifont/unifont_jp.otf",
    "/usr/share/fonts/opentype/unifont/unifont.otf",
    "/usr/share/fonts/truetype/unifont/unifont.ttf",
)
SMALL_CANDIDATES = ("/usr/share/fonts/truetype/misaki/misaki_gothic.ttf",)
BIG_PX = 16
SMALL_PX = 8
# Pillow's own layout, not raqm/HarfBuzz: pixel fonts on one line of Japanese need no shaping (the golden
# screens are byte-identical), and HarfBuzz's code and the font tables it reads cost the daemon ≈ 1 MB.
LAYOUT = ImageFont.Layout.BASIC


class FontMissing(RuntimeError):
    """A font file is not installed (Debian packages fonts-unifont and fonts-misaki)."""


def _first(candidates: tuple[str, ...], package: str) -> Path:
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing(f"no font found (install Debian's {package}); looked in: {', '.join(candidates)}")


@cache
def big() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_first(BIG_CANDIDATES, "fonts-unifont")), BIG_PX, layout_engine=LAYOUT)


@cache
def small() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_first(SMALL_CANDIDATES, "fonts-misaki")), SMALL_PX, layout_engine=LAYOUT)


def has_glyph(font: ImageFont.FreeTypeFont, char: str) -> bool:
    """True when the font draws `char` itself rather than its .notdef box (tofu)."""
    if char.isspace():
        return True
    drawn = _draw(font, char)
    return any(drawn) and drawn != _draw(font, NOT_A_CHARACTER)


NOT_A_CHARACTER = "\U0010fffd"  # a private-use code point no font here covers: shows .notdef


def _draw(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    image = Image.new("1", (2 * BIG_PX, 2 * BIG_PX), 0)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    draw.text((0, 0), char, font=font, fill=1)
    return image.tobytes()
