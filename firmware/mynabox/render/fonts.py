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


class PixelFont:
    """A pixel font whose glyphs are drawn once each from the font file and kept (a few hundred bytes each).

    The file is open only while glyphs the box has not drawn yet are added: FreeType maps the whole file and
    each glyph it reads brings its neighbourhood into the daemon's RSS (unifont is 5 MB; the screens' few
    hundred glyphs had touched 1.3 MB of it). Glyphs are placed as Pillow's basic layout places them (pen
    advanced by each glyph's advance, no kerning in these fonts): screens come out the same pixel for pixel.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self._glyphs: dict[str, tuple[Image.Image | None, int, int, float]] = {}  # mask, left, top, advance

    def _have(self, text: str) -> None:
        missing = {char for char in text if char not in self._glyphs}
        if not missing:
            return
        font = ImageFont.truetype(str(self.path), self.size, layout_engine=LAYOUT)
        for char in missing:
            left, top, right, bottom = (int(v) for v in font.getbbox(char, mode="1", anchor="la"))
            mask = None
            if right > left and bottom > top:
                mask = Image.new("1", (right - left, bottom - top), 0)
                pen = ImageDraw.Draw(mask)
                pen.fontmode = "1"
                pen.text((-left, -top), char, font=font, fill=1, anchor="la")
            self._glyphs[char] = (mask, left, top, font.getlength(char, mode="1"))
        del font  # FreeType unmaps the file

    def getlength(self, text: str) -> float:
        self._have(text)
        return sum(self._glyphs[char][3] for char in text)

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, fill: int) -> None:
        """`text` with its left end at x and the font's ascender at y, as `ImageDraw.text` draws it."""
        self._have(text)
        x, y = xy
        pen = 0.0
        for char in text:
            mask, left, top, advance = self._glyphs[char]
            if mask is not None:
                draw.bitmap((x + int(pen) + left, y + top), mask, fill=fill)
            pen += advance


@cache
def big() -> PixelFont:
    return PixelFont(_first(BIG_CANDIDATES, "fonts-unifont"), BIG_PX)


@cache
def small() -> PixelFont:
    return PixelFont(_first(SMALL_CANDIDATES, "fonts-misaki"), SMALL_PX)


def has_glyph(font: PixelFont, char: str) -> bool:
    """True when the font draws `char` itself rather than its .notdef box (tofu)."""
    if char.isspace():
        return True
    drawn = _draw(font, char)
    return any(drawn) and drawn != _draw(font, NOT_A_CHARACTER)


NOT_A_CHARACTER = "\U0010fffd"  # a private-use code point no font here covers: shows .notdef


def _draw(font: PixelFont, char: str) -> bytes:
    image = Image.new("1", (2 * BIG_PX, 2 * BIG_PX), 0)
    font.draw(ImageDraw.Draw(image), (0, 0), char, fill=1)
    return image.tobytes()
