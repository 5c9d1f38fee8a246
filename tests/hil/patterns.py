"""The OLED test pattern: a one-pixel frame on the edge (every edge pixel of the panel) and an 8×8
checkerboard inside (every column driver and page both ways), easy to describe and to judge by eye."""

from __future__ import annotations

from PIL import Image, ImageDraw

WIDTH, HEIGHT, CELL = 128, 64, 8


def test_pattern() -> Image.Image:
    image = Image.new("1", (WIDTH, HEIGHT), 0)
    draw = ImageDraw.Draw(image)
    for y in range(0, HEIGHT, CELL):
        for x in range(0, WIDTH, CELL):
            if (x // CELL + y // CELL) % 2 == 0:
                draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=1)
    draw.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=1)
    return image


test_pattern.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
