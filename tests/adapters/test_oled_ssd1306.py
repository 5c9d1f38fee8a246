"""luma's real SSD1306 driver over luma's real I2C interface, on a bus that records every transfer.

The recorded stream is decoded as an SSD1306 would take it (control byte 0x00 = commands, 0x40 = GDDRAM
data; addressing mode, column and page ranges, the pointer's wrap) into the controller's 128x64 GDDRAM, and
that must be, pixel for pixel, the frame the renderer drew: for every screen the box can show, upright and
mounted upside down. No /dev/i2c-N exists here; the bus is the only stand-in (smbus2's interface, which
luma's `i2c(bus=...)` takes), everything above it is the code a box runs.

A bus that stops answering (NACK: EREMOTEIO, as a display whose cable came loose) makes the display a failed
part; when it answers again, a retry opens it again and the current screen is drawn.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pytest
from PIL import Image

from mynabox.adapters.oled import Display, Oled
from mynabox.core.events import Event, PartHealth
from mynabox.render.catalog import catalog
from mynabox.render.draw import render
from mynabox.vocab import Part

ADDRESS = 0x3C
WIDTH, PAGES = 128, 8
# Commands followed by n argument bytes (SSD1306 datasheet, command table 9).
ARGS = {0x81: 1, 0x8D: 1, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1, 0x20: 1, 0x21: 2, 0x22: 2}


@dataclass
class RecordingBus:
    """smbus2.SMBus's `write_i2c_block_data`, recording (address, control byte, bytes); `gone` NACKs."""

    transfers: list[tuple[int, int, bytes]] = field(default_factory=list)
    gone: bool = False

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        if self.gone:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        assert len(data) <= 32, "an SMBus block is at most 32 bytes"
        self.transfers.append((address, register, bytes(data)))

    def close(self) -> None:
        pass


@dataclass
class Ssd1306:
    """The controller's side: GDDRAM and the registers the stream sets."""

    ram: list[bytearray] = field(default_factory=lambda: [bytearray(WIDTH) for _ in range(PAGES)])
    mode: int = 2  # page addressing after reset
    columns: tuple[int, int] = (0, WIDTH - 1)
    pages: tuple[int, int] = (0, PAGES - 1)
    column: int = 0
    page: int = 0
    on: bool = False
    segment_remap: bool = False
    com_reversed: bool = False
    charge_pump: bool = False
    multiplex: int = 63
    inverted: bool = False

    def feed(self, transfers: list[tuple[int, int, bytes]]) -> None:
        commands = bytearray()
        for address, control, data in transfers:
            assert address == ADDRESS
            if control == 0x00:
                commands += data
                commands = self._run(commands)
            elif control == 0x40:
                assert not commands, f"data while a command waits for its arguments: {commands.hex()}"
                for byte in data:
                    self._write(byte)
            else:
                raise AssertionError(f"unknown control byte 0x{control:02x}")
        assert not commands, f"a command was left without its arguments: {commands.hex()}"

    def _run(self, stream: bytearray) -> bytearray:
        """Execute whole commands; return the bytes of one whose arguments are still to come."""
        i = 0
        while i < len(stream):
            op, n = stream[i], ARGS.get(stream[i], 0)
            if i + n >= len(stream) and n:
                return stream[i:]
            args = stream[i + 1 : i + 1 + n]
            i += 1 + n
            if op == 0x20:
                self.mode = args[0] & 0x03
            elif op == 0x21:
                self.columns, self.column = (args[0] & 0x7F, args[1] & 0x7F), args[0] & 0x7F
            elif op == 0x22:
                self.pages, self.page = (args[0] & 0x07, args[1] & 0x07), args[0] & 0x07
            elif op == 0x8D:
                self.charge_pump = bool(args[0] & 0x04)
            elif op == 0xA8:
                self.multiplex = args[0]
            elif op in (0xAE, 0xAF):
                self.on = op == 0xAF
            elif op in (0xA0, 0xA1):
                self.segment_remap = op == 0xA1
            elif op in (0xC0, 0xC8):
                self.com_reversed = op == 0xC8
            elif op in (0xA6, 0xA7):
                self.inverted = op == 0xA7
            elif 0xB0 <= op <= 0xB7:
                self.page = op & 0x07
            elif op <= 0x0F:
                self.column = (self.column & 0xF0) | op
            elif 0x10 <= op <= 0x1F:
                self.column = (self.column & 0x0F) | ((op & 0x0F) << 4)
        return bytearray()

    def _write(self, byte: int) -> None:
        self.ram[self.page][self.column] = byte
        if self.mode == 0:  # horizontal: along the page, then the next page, within the ranges
            if self.column == self.columns[1]:
                self.column = self.columns[0]
                self.page = self.pages[0] if self.page == self.pages[1] else self.page + 1
            else:
                self.column += 1
        elif self.mode == 1:  # vertical
            if self.page == self.pages[1]:
                self.page = self.pages[0]
                self.column = self.columns[0] if self.column == self.columns[1] else self.column + 1
            else:
                self.page += 1
        else:  # page: along the page only
            self.column = min(self.column + 1, WIDTH - 1)

    def glass(self) -> Image.Image:
        """What the panel shows. A 128x64 module is wired for segment remap + COM scan reversed (what every
        driver sends), so then GDDRAM column 0, page 0 bit 0 is the top left pixel; otherwise it mirrors."""
        image = Image.new("1", (WIDTH, PAGES * 8))
        pixels = image.load()
        assert pixels is not None
        for y in range(PAGES * 8):
            for x in range(WIDTH):
                lit = bool(self.ram[y // 8][x] >> (y % 8) & 1) != self.inverted
                gx = x if self.segment_remap else WIDTH - 1 - x
                gy = y if self.com_reversed else PAGES * 8 - 1 - y
                pixels[gx, gy] = 1 if lit else 0
        return image


SCREENS = catalog()


@pytest.mark.parametrize("rotate", [0, 2], ids=["upright", "upside-down"])
def test_the_ssd1306_byte_stream_is_the_frame_the_renderer_drew(rotate: int) -> None:
    bus = RecordingBus()
    oled = Oled("ssd1306", i2c_address=ADDRESS, rotate=rotate, bus=bus)
    controller = Ssd1306()
    controller.feed(bus.transfers)
    assert controller.on and controller.charge_pump and controller.multiplex == 63
    assert controller.mode == 0 and controller.segment_remap and controller.com_reversed
    assert controller.glass().getbbox() is None  # cleared at start
    for name, screen in sorted(SCREENS.items()):
        bus.transfers.clear()
        drawn = render(screen)
        oled.show(drawn)
        controller.feed(bus.transfers)
        want = drawn.convert("1").rotate(180) if rotate == 2 else drawn.convert("1")
        got = controller.glass()
        assert got.tobytes() == want.tobytes(), f"{name}: the OLED would show something else"
        assert sum(len(d) for _a, c, d in bus.transfers if c == 0x40) == WIDTH * PAGES, name


def test_a_display_that_stops_answering_fails_and_comes_back_on_retry() -> None:
    bus = RecordingBus()
    posted: list[Event] = []
    display = Display(lambda: Oled("ssd1306", i2c_address=ADDRESS, bus=bus), posted.append)
    first, second = render(SCREENS["ready"]), render(SCREENS["reading"])
    display.show(first)
    assert display.failed() == () and display.last is first
    bus.gone = True  # the cable came loose: every transfer is NACKed
    display.show(second)
    assert display.failed() == (Part.DISPLAY,) and posted == [PartHealth(Part.DISPLAY, working=False)]
    assert "DisplayError" in (display.kept.problem or "")
    display.retry()  # still gone: the controller's init is NACKed too
    assert display.failed() == (Part.DISPLAY,) and len(posted) == 1
    bus.gone = False
    bus.transfers.clear()
    display.retry()
    assert display.failed() == () and posted[-1] == PartHealth(Part.DISPLAY, working=True)
    controller = Ssd1306()
    controller.feed(bus.transfers)
    assert controller.on  # initialised again (the controller redraws the screen on PartHealth)
    display.show(second)
    controller.feed(bus.transfers)
    assert controller.glass().tobytes() == second.convert("1").tobytes()


def test_the_decoder_catches_a_wrong_stream() -> None:
    """The check can fail: one GDDRAM byte off, or a column range one short, and the frame differs."""
    bus = RecordingBus()
    oled = Oled("ssd1306", i2c_address=ADDRESS, bus=bus)
    drawn = render(SCREENS["result-flags"])
    oled.show(drawn)
    address, control, data = bus.transfers[-1]
    bus.transfers[-1] = (address, control, bytes([data[0] ^ 0x01, *data[1:]]))
    controller = Ssd1306()
    controller.feed(bus.transfers)
    assert controller.glass().tobytes() != drawn.convert("1").tobytes()
    shifted = Ssd1306()
    bus.transfers.clear()
    oled.device.command(0x21, 1, 127, 0x22, 0, 7)  # start one column late
    oled.device.data(list(bytes(WIDTH * PAGES)))
    oled.show(drawn)
    shifted.feed([t for t in bus.transfers if t[2] != bytes([0x21, 0, 127, 0x22, 0, 7])])
    assert shifted.glass().tobytes() != drawn.convert("1").tobytes()


def test_a_display_lost_while_the_screen_stands_still_is_found_by_the_probe() -> None:
    """No frame is drawn while the box waits; the retry's probe ("display on") finds the NACK."""
    bus = RecordingBus()
    posted: list[Event] = []
    display = Display(lambda: Oled("ssd1306", i2c_address=ADDRESS, bus=bus), posted.append)
    display.retry()
    assert display.failed() == () and bus.transfers[-1] == (ADDRESS, 0x00, bytes([0xAF]))
    bus.gone = True
    display.retry()
    assert display.failed() == (Part.DISPLAY,) and posted == [PartHealth(Part.DISPLAY, working=False)]
