"""The OLED: SSD1306 / SH1106 over I2C with luma.oled, or luma's dummy device (tests, demo, bench).

The dummy device can write every frame as PNG (for review and the demo) and draw itself in a terminal
with block characters. luma's and the OS's errors become DisplayError.

`Display` is the box's OLED as a part it can do without (`adapters.kept`): missing at start or lost
later (a loose cable: the write fails), the box goes on reading and delivering, reports it, and opens it
again at each retry; the controller redraws the current screen when it is back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from mynabox.adapters.kept import Kept
from mynabox.core.events import Event
from mynabox.vocab import Part


class DisplayError(Exception):
    """The display is missing or cannot be driven."""


class Oled:
    def __init__(
        self,
        driver: str,
        *,
        i2c_port: int = 1,
        i2c_address: int = 0x3C,
        rotate: int = 0,
        frames_dir: Path | None = None,
        bus: Any = None,
    ) -> None:
        """`bus`: an smbus2-like object for luma's I2C interface instead of /dev/i2c-`i2c_port`."""
        from luma.core.error import Error as LumaError

        self.driver = driver
        self.frames_dir = frames_dir
        self.frames = 0
        self.last: Image.Image | None = None
        self._lock = threading.Lock()
        try:
            self.device = _open(driver, i2c_port, i2c_address, rotate, bus)
            if frames_dir is not None:
                frames_dir.mkdir(parents=True, exist_ok=True)
        except (LumaError, OSError) as err:
            raise DisplayError(f"{driver} on i2c-{i2c_port} at 0x{i2c_address:02x}: {err}") from err

    def show(self, image: Image.Image) -> None:
        from luma.core.error import Error as LumaError

        with self._lock:
            try:
                self.device.display(image.convert(self.device.mode))
                if self.frames_dir is not None:  # the dummy's "glass": a frame it cannot write is not shown
                    image.save(self.frames_dir / f"frame-{self.frames + 1:05d}.png")
                    image.save(self.frames_dir / "current.png")
            except (LumaError, OSError) as err:
                raise DisplayError(f"display write failed: {err}") from err
            self.last = image
            self.frames += 1

    def probe(self) -> None:
        """Send "display on" (no change on a working display): one that went away NACKs it, so a loose
        cable is found while the screen stands still, not at the next tap."""
        from luma.core.error import Error as LumaError

        with self._lock:
            try:
                self.device.show()
                if self.frames_dir is not None and not self.frames_dir.is_dir():  # the dummy's "glass"
                    raise FileNotFoundError(f"frames directory {self.frames_dir} is gone")
            except (LumaError, OSError) as err:
                raise DisplayError(f"display does not answer: {err}") from err

    def clear(self) -> None:
        with self._lock:
            self.device.clear()

    def close(self) -> None:
        with self._lock:
            self.device.cleanup = lambda: None  # keep the last screen (the stopped screen) visible
            if hasattr(self.device, "_serial_interface"):
                self.device._serial_interface.cleanup()


class Display:
    """The OLED as a kept part: `show` draws if it works, `retry` opens it again if it does not."""

    def __init__(self, opener: Callable[[], Oled], post: Callable[[Event], None]) -> None:
        self.kept: Kept[Oled] = Kept(Part.DISPLAY, opener, post, Oled.close, probe=Oled.probe)
        self.kept.start()
        self.last: Image.Image | None = None  # the last frame that reached the display

    def show(self, image: Image.Image) -> None:
        self.kept.use(lambda oled: self._draw(oled, image))

    def _draw(self, oled: Oled, image: Image.Image) -> None:
        oled.show(image)
        self.last = image

    def retry(self) -> None:
        self.kept.retry()

    def failed(self) -> tuple[Part, ...]:
        return () if self.kept.working else (Part.DISPLAY,)

    def close(self) -> None:
        self.kept.close()


def _open(driver: str, port: int, address: int, rotate: int, bus: Any = None) -> Any:
    if driver == "dummy":
        from luma.core.device import dummy

        return dummy(width=128, height=64, rotate=rotate, mode="1")
    from luma.core.interface.serial import i2c
    from luma.oled.device import sh1106, ssd1306

    serial = i2c(port=port, address=address) if bus is None else i2c(bus=bus, address=address)
    device_class = {"ssd1306": ssd1306, "sh1106": sh1106}.get(driver)
    if device_class is None:
        raise DisplayError(f"unknown display driver {driver!r}")
    return device_class(serial, width=128, height=64, rotate=rotate)


def to_terminal(image: Image.Image) -> str:
    """The 128x64 frame as 32 lines of half-block characters (two pixel rows per character)."""
    pixels = image.convert("1").load()
    assert pixels is not None
    rows = []
    for y in range(0, image.height, 2):
        row = []
        for x in range(image.width):
            top, bottom = pixels[x, y], pixels[x, y + 1] if y + 1 < image.height else 0
            row.append("█" if top and bottom else "▀" if top else "▄" if bottom else " ")
        rows.append("".join(row))
    return "\n".join(rows)
