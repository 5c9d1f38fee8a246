"""An SSD1306 on a recording I2C bus: what the box's OLED would receive, decoded back into the frame it shows.

`RecordingBus` has smbus2.SMBus's interface (what luma.core's i2c interface calls: write_i2c_block_data for
commands, i2c_rdwr with smbus2's i2c_msg for data) and keeps every transfer. `Ssd1306` is the controller's
side, written from the SSD1306 datasheet (§8.7 the I2C control byte, §10 the command table, §8.7/§10.1.3
GDDRAM addressing), independently of luma: it parses the command stream, refuses a command it does not
know, and writes data into its 8 pages × 128 columns of GDDRAM in the addressing mode and window the
commands set. `frame()` is what a module mounted the usual way shows (segment remap A1 and COM scan C8, as
every 128x64 module's init sets, show GDDRAM upright).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

WIDTH, PAGES = 128, 8
CONTROL_COMMANDS, CONTROL_DATA = 0x00, 0x40  # Co = 0, D/C# = 0 / 1: the rest of the message is one kind
# Commands with arguments, by first byte: how many argument bytes follow (datasheet §10).
ARGS = {
    0x81: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1, 0x8D: 1,
    0xA3: 2, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5,
}  # fmt: skip
NO_ARGS = {0xA0, 0xA1, 0xA4, 0xA5, 0xA6, 0xA7, 0xAE, 0xAF, 0xC0, 0xC8, 0x2E, 0x2F, 0xE3}


class ProtocolError(Exception):
    """The stream is not one an SSD1306 would accept."""


@dataclass
class Ssd1306:
    address: int = 0x3C
    ram: list[bytearray] = field(default_factory=lambda: [bytearray(WIDTH) for _ in range(PAGES)])
    mode: int = 2  # after reset: page addressing
    columns: tuple[int, int] = (0, WIDTH - 1)
    pages: tuple[int, int] = (0, PAGES - 1)
    column: int = 0
    page: int = 0
    on: bool = False
    inverted: bool = False
    remap: bool = False  # A1: column 127 is SEG0
    com_reversed: bool = False  # C8: scan from COM[N-1]
    contrast: int = 0x7F
    commands: list[tuple[int, ...]] = field(default_factory=list)
    data_bytes: int = 0

    def receive(self, message: bytes) -> None:
        """One I2C write to the controller: a control byte, then commands or display data."""
        if not message:
            raise ProtocolError("an empty write")
        control, rest = message[0], message[1:]
        if control == CONTROL_COMMANDS:
            self._commands(rest)
        elif control == CONTROL_DATA:
            for byte in rest:
                self._write(byte)
        else:
            raise ProtocolError(f"control byte 0x{control:02x} (Co set or reserved bits)")

    def _commands(self, stream: bytes) -> None:
        i = 0
        while i < len(stream):
            op = stream[i]
            n = ARGS.get(op, 0)
            if op not in ARGS and op not in NO_ARGS and not 0x00 <= op <= 0x1F and not 0x40 <= op <= 0x7F \
                    and not 0xB0 <= op <= 0xB7:  # fmt: skip
                raise ProtocolError(f"unknown command 0x{op:02x}")
            args = stream[i + 1 : i + 1 + n]
            if len(args) < n:
                raise ProtocolError(f"command 0x{op:02x} cut short")
            self.commands.append((op, *args))
            self._apply(op, args)
            i += 1 + n

    def _apply(self, op: int, args: bytes) -> None:
        if op == 0x20:
            if args[0] & 0x03 == 0x03:
                raise ProtocolError("memory addressing mode 3 is invalid")
            self.mode = args[0] & 0x03
        elif op == 0x21:
            self.columns = (args[0] & 0x7F, args[1] & 0x7F)
            self.column = self.columns[0]
        elif op == 0x22:
            self.pages = (args[0] & 0x07, args[1] & 0x07)
            self.page = self.pages[0]
        elif 0xB0 <= op <= 0xB7:
            self.page = op & 0x07
        elif op <= 0x0F:
            self.column = (self.column & 0xF0) | op
        elif op <= 0x1F:
            self.column = (self.column & 0x0F) | ((op & 0x0F) << 4)
        elif op in (0xAE, 0xAF):
            self.on = op == 0xAF
        elif op in (0xA6, 0xA7):
            self.inverted = op == 0xA7
        elif op in (0xA0, 0xA1):
            self.remap = op == 0xA1
        elif op in (0xC0, 0xC8):
            self.com_reversed = op == 0xC8
        elif op == 0x81:
            self.contrast = args[0]

    def _write(self, byte: int) -> None:
        self.data_bytes += 1
        if self.column < WIDTH:
            self.ram[self.page][self.column] = byte
        if self.mode == 2:  # page addressing: the column wraps within the page
            self.column = (self.column + 1) % WIDTH
        elif self.mode == 0:  # horizontal: across the column window, then the next page of the window
            if self.column >= self.columns[1]:
                self.column = self.columns[0]
                self.page = self.pages[0] if self.page >= self.pages[1] else self.page + 1
            else:
                self.column += 1
        else:  # vertical: down the page window, then the next column
            if self.page >= self.pages[1]:
                self.page = self.pages[0]
                self.column = self.columns[0] if self.column >= self.columns[1] else self.column + 1
            else:
                self.page += 1

    def frame(self) -> Image.Image:
        """The 128x64 picture on a module mounted the usual way (A1 + C8 show GDDRAM upright)."""
        image = Image.new("1", (WIDTH, PAGES * 8))
        pixels = image.load()
        assert pixels is not None
        for y in range(PAGES * 8):
            for x in range(WIDTH):
                col = x if self.remap else WIDTH - 1 - x
                row = y if self.com_reversed else PAGES * 8 - 1 - y
                lit = bool(self.ram[row // 8][col] >> (row % 8) & 1) != self.inverted
                pixels[x, y] = 1 if lit and self.on else 0
        return image


class RecordingBus:
    """smbus2.SMBus's interface over an `Ssd1306`; every write is kept in `writes` (address, bytes)."""

    display: ClassVar[Ssd1306 | None] = None  # the controller on every bus opened (set by the test)
    opened: ClassVar[list[RecordingBus]] = []

    def __init__(self, bus: int | str | None = None, force: bool = False) -> None:
        self.bus = bus
        self.writes: list[tuple[int, bytes]] = []
        self.closed = False
        RecordingBus.opened.append(self)

    def _deliver(self, address: int, message: bytes) -> None:
        self.writes.append((address, message))
        display = RecordingBus.display
        if display is None or display.address != address:
            raise OSError(121, "Remote I/O error")  # no ACK: nothing at that address (EREMOTEIO)
        display.receive(message)

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], force: Any = None) -> None:
        if len(data) > 32:
            raise OSError(22, "Invalid argument")  # SMBus block writes carry at most 32 bytes
        self._deliver(i2c_addr, bytes([register, *data]))

    def i2c_rdwr(self, *messages: Any) -> None:
        for msg in messages:
            if msg.flags & 0x0001:  # I2C_M_RD: the SSD1306 over I2C is write-only here
                raise OSError(5, "Input/output error")
            self._deliver(msg.addr, bytes(msg))

    def close(self) -> None:
        self.closed = True
