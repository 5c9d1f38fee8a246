"""Screen description → 1-bit 128×64 image.

Layout: an 8 px header, up to three 16 px lines (or six 8 px lines), an 8 px status line. Text that does not
fit is cut with an ellipsis, never wrapped mid-word into a line that is not there.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from mynabox.core.screens import BIG_LINES, SMALL_LINES, Screen
from mynabox.render import fonts

WIDTH, HEIGHT = 128, 64
HEADER_Y = 0
BODY_Y = 8
STATUS_Y = 56


def _fit(text: str, font: fonts.PixelFont, width: int = WIDTH) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def render(screen: Screen) -> Image.Image:
    background, ink = (1, 0) if screen.inverted else (0, 1)
    image = Image.new("1", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no antialiasing: bitmap fonts stay crisp
    small, big = fonts.small(), fonts.big()
    # The header is a title bar (inverted), so it reads as a label and never touches the body text.
    draw.rectangle((0, HEADER_Y, WIDTH - 1, BODY_Y - 1), fill=ink)
    small.draw(draw, (1, HEADER_Y), _fit(screen.header, small, WIDTH - 1), fill=background)
    if screen.small:
        for i, line in enumerate(screen.lines[:SMALL_LINES]):
            small.draw(draw, (0, BODY_Y + i * 8), _fit(line, small), fill=ink)
    else:
        lines = screen.lines[:BIG_LINES]
        top = BODY_Y + (BIG_LINES - len(lines)) * 8  # centre fewer lines vertically
        for i, line in enumerate(lines):
            text = _fit(line, big)
            x = max(0, (WIDTH - int(big.getlength(text))) // 2)
            big.draw(draw, (x, top + i * 16), text, fill=ink)
    small.draw(draw, (0, STATUS_Y), _fit(screen.status.text(), small), fill=ink)
    return image
