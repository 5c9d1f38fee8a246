"""The OLED adapter with luma's dummy device, and the real controllers over a capturing serial interface."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import ImageChops

from mynabox.adapters.oled import DisplayError, Oled, to_terminal
from mynabox.core import screens
from mynabox.core.screens import Status
from mynabox.render.draw import render


def test_dummy_shows_frames_and_writes_pngs(tmp_path: Path) -> None:
    oled = Oled("dummy", frames_dir=tmp_path)
    image = render(screens.ready(Status()))
    oled.show(image)
    assert oled.frames == 1
    assert ImageChops.difference(oled.device.image.convert("L"), image.convert("L")).getbbox() is None
    assert (tmp_path / "current.png").is_file() and (tmp_path / "frame-00001.png").is_file()
    text = to_terminal(image)
    assert len(text.splitlines()) == 32 and "█" in text


@pytest.mark.parametrize("driver", ["ssd1306", "sh1106"])
def test_controllers_send_the_frame(driver: str) -> None:
    from luma.oled.device import sh1106, ssd1306

    class Capture:  # a serial interface that records what the controller driver sends
        def __init__(self) -> None:
            self.sent: list[tuple[int, ...]] = []
            self.data_bytes = 0

        def command(self, *cmd: int) -> None:
            self.sent.append(cmd)

        def data(self, data: list[int]) -> None:
            self.data_bytes += len(data)

        def cleanup(self) -> None:
            pass

    serial = Capture()
    device = {"ssd1306": ssd1306, "sh1106": sh1106}[driver](serial, width=128, height=64)
    device.display(render(screens.reading(Status())))
    assert serial.data_bytes >= 128 * 64 // 8  # one full 1-bit frame went out
    assert serial.sent  # and the controller was configured


def test_missing_bus_is_a_display_error() -> None:
    with pytest.raises(DisplayError):
        Oled("ssd1306", i2c_port=57)
