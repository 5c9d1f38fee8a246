"""The OLED adapter with luma's real ssd1306 driver and its real I2C interface (smbus2's i2c_msg), on a
recording bus (tests/support/ssd1306.py) instead of /dev/i2c-N: the command and data stream the box would
put on the wire is decoded by an SSD1306 model back into the frame the renderer drew."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import smbus2
from PIL import ImageChops

from mynabox.adapters.oled import DisplayError, Oled
from mynabox.render.catalog import catalog
from mynabox.render.draw import render
from support.ssd1306 import ProtocolError, RecordingBus, Ssd1306


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RecordingBus]]:
    monkeypatch.setattr(smbus2, "SMBus", RecordingBus)
    RecordingBus.display = Ssd1306(address=0x3C)
    RecordingBus.opened = []
    yield RecordingBus
    RecordingBus.display = None


@pytest.mark.parametrize("name", ["ready", "reading", "consent", "result-flags", "reader-missing"])
def test_the_wire_carries_the_frame_the_renderer_drew(bus: type[RecordingBus], name: str) -> None:
    screens = catalog()
    oled = Oled("ssd1306", i2c_port=1, i2c_address=0x3C)
    drawn = render(screens[name])
    oled.show(drawn)
    display = bus.display
    assert display is not None and display.on
    assert ImageChops.difference(display.frame(), drawn.convert("1")).getbbox() is None
    assert display.data_bytes >= 2 * 128 * 64 // 8  # the init's clear and this frame, each a full GDDRAM
    assert {address for b in bus.opened for address, _ in b.writes} == {0x3C}
    assert bus.opened[0].bus == 1  # /dev/i2c-1: the Pi's I2C1 on GPIO 2/3


def test_every_screen_in_the_catalog_decodes_to_itself(bus: type[RecordingBus]) -> None:
    oled = Oled("ssd1306", i2c_port=1, i2c_address=0x3C)
    for name, screen in catalog().items():
        drawn = render(screen)
        oled.show(drawn)
        assert bus.display is not None
        assert ImageChops.difference(bus.display.frame(), drawn.convert("1")).getbbox() is None, name


def test_no_display_at_the_address_is_a_display_error(bus: type[RecordingBus]) -> None:
    """A bus with nothing at 0x3C (the boot test's i2c-stub bus, a loose cable): no ACK, a DisplayError."""
    with pytest.raises(DisplayError, match="0x3d"):
        Oled("ssd1306", i2c_port=1, i2c_address=0x3D)


def test_the_model_refuses_what_an_ssd1306_would_not_take() -> None:
    display = Ssd1306()
    with pytest.raises(ProtocolError, match="unknown command 0xff"):
        display.receive(bytes([0x00, 0xFF]))
    with pytest.raises(ProtocolError, match="cut short"):
        display.receive(bytes([0x00, 0x21, 0x00]))
    with pytest.raises(ProtocolError, match="control byte 0x80"):
        display.receive(bytes([0x80, 0xAF]))
