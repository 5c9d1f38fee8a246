"""Draw hw/wiring.png from the pin map the firmware reads, so the picture cannot drift from the data.

    .venv/bin/python hw/wiring_diagram.py [PINS_TOML] [OUT_PNG]

Defaults: firmware/mynabox/data/pins.toml -> hw/wiring.png. tests/hw/test_wiring_diagram.py fails when the
committed PNG differs from a fresh render. Bitmap fonts only (Debian's unifont via mynabox.render.fonts) and
no antialiasing, so the same inputs give the same pixels on every machine with the pinned Pillow.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mynabox.adapters.panel import Line, PinMap, bcm_number, load_pin_map
from mynabox.render import fonts

ROOT = Path(__file__).resolve().parents[1]
# BCM GPIO -> physical pin of the Pi's 40-pin header (Pi 2 and later, Pi 4/5 included).
HEADER = {
    2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23, 12: 32, 13: 33, 14: 8,
    15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15, 23: 16, 24: 18, 25: 22, 26: 37, 27: 13,
}  # fmt: skip
GROUNDS = (6, 9, 14, 20, 25, 30, 34, 39)
# Part values (hw/README.md's bill of materials): not in pins.toml, which holds only what the firmware reads.
LED_RESISTOR = "330 Ω"
BASE_RESISTOR = "1 kΩ"
TRANSISTOR = "2N2222 (NPN)"

WIDTH, ROW, TOP, LEFT = 960, 44, 70, 20
INK, PAPER, WIRE, PART, GROUND = (0, 0, 0), (255, 255, 255), (0, 90, 200), (255, 244, 214), (90, 90, 90)


def rows(pins: PinMap) -> list[tuple[str, list[str], str]]:
    """(Pi side, parts in the path, return side) per wire, from the pin map."""

    def gpio(line: Line, what: str = "") -> str:
        n = bcm_number(line)
        if n is None:
            raise ValueError(f"{line!r} is not a Pi header line (GPIOn)")
        return f"pin {HEADER[n]:>2}  GPIO{n}{' ' + what if what else ''}"

    ground = iter(g for g in GROUNDS if g not in (9,))
    return [
        ("pin  1  3V3", ["OLED VCC"], ""),
        (gpio(2, "SDA1"), ["OLED SDA"], ""),
        (gpio(3, "SCL1"), ["OLED SCL"], ""),
        ("pin  9  GND", ["OLED GND"], ""),
        (gpio(pins.consent), ["同意 button (momentary)"], f"pin {next(ground)}  GND"),
        (gpio(pins.emergency), ["緊急 button (momentary)"], f"pin {next(ground)}  GND"),
        (gpio(pins.led), [LED_RESISTOR, "LED anode→cathode"], f"pin {next(ground)}  GND"),
        (gpio(pins.buzzer), [BASE_RESISTOR, f"{TRANSISTOR} base"], f"emitter → pin {next(ground)}  GND"),
        ("pin  2  5V", ["buzzer + (active, 5 V)", "buzzer − → collector"], ""),
    ]


def render(pins: PinMap) -> Image.Image:
    # Pillow's own font object (the box's PixelFont draws screens only): the same unifont file and layout.
    font = ImageFont.truetype(str(fonts.big().path), fonts.BIG_PX, layout_engine=fonts.LAYOUT)
    table = rows(pins)
    height = TOP + ROW * len(table) + 130
    image = Image.new("RGB", (WIDTH, height), PAPER)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no antialiasing: identical pixels everywhere
    draw.text(
        (LEFT, 16),
        "mynabox wiring (BCM numbering, from firmware/mynabox/data/pins.toml)",
        font=font,
        fill=INK,
    )
    header_right = LEFT + 230
    draw.rectangle((LEFT, TOP - 14, header_right, TOP + ROW * len(table) - 18), outline=INK, width=2)
    draw.text((LEFT + 8, TOP + ROW * len(table) - 10), "Raspberry Pi 40-pin header", font=font, fill=INK)
    for i, (pi_side, parts, back) in enumerate(table):
        y = TOP + i * ROW
        draw.text((LEFT + 8, y), pi_side, font=font, fill=INK)
        x = header_right
        for part in parts:
            w = int(draw.textlength(part, font=font)) + 20
            draw.line((x, y + 8, x + 40, y + 8), fill=WIRE, width=3)
            x += 40
            draw.rectangle((x, y - 4, x + w, y + 22), fill=PART, outline=INK)
            draw.text((x + 10, y), part, font=font, fill=INK)
            x += w
        if back:
            draw.line((x, y + 8, x + 40, y + 8), fill=WIRE, width=3)
            draw.text((x + 48, y), back, font=font, fill=GROUND)
    notes = [
        f"Buttons: switch to GND, internal pull-up, debounce {pins.debounce_s:g} s; "
        f"both held {pins.clear_hold_s:g} s clear.",
        "OLED: 128x64 SSD1306 or SH1106, I2C1 at 0x3c (or 0x3d), 3.3 V; Pi has 1.8 kΩ pull-ups.",
        "Buzzer: active 5 V, switched low-side; a magnetic one needs a 1N4148 across it.",
        "NFC reader: USB (CCID). Supply: 5 V / 3 A into the Pi's USB-C (see hw/README.md).",
    ]
    for i, note in enumerate(notes):
        draw.text((LEFT, TOP + ROW * len(table) + 20 + i * 24), note, font=font, fill=INK)
    return image


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else None
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "hw/wiring.png"
    render(load_pin_map(source)).save(out, optimize=False)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
