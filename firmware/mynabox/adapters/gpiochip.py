"""gpiozero on the kernel's GPIO character device (`/dev/gpiochipN`) through lgpio, on any board.

gpiozero's own choice (`pin_factory` unset) tries lgpio, RPi.GPIO, pigpio, then its native factory, and
every Pi factory first reads the Pi's revision code to learn its header. Debian's kernel with upstream
device trees on a Pi, and an emulated board, may give no revision (the firmware adds it to the device tree;
qemu and a plain arm64 /proc/cpuinfo do not), and the native factory needs /dev/gpiomem (Raspberry Pi
kernels only) or /dev/mem. So the box names its lines the way the kernel does and asks the chip itself:
the GPIO controller is found by its label (`pinctrl-bcm2711` on a Pi 4, `pinctrl-bcm2835` on a Pi 3 and
Zero 2 W, `9030000.pl061` on qemu's virt board), and each line by its name from the device tree's
gpio-line-names (`GPIO17`) or its offset. `ChipFactory` is lgpio's factory with a "header" made of that
chip's lines, so gpiozero's devices work unchanged.

lgpio writes its notification FIFOs (`.lgd-nfy*`) into the working directory when it is imported: the unit
runs the daemon in its RuntimeDirectory (WorkingDirectory=/run/mynabox).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mynabox.adapters.panel import PanelError

if TYPE_CHECKING:
    from mynabox.adapters.panel import PinMap

MAX_LINES = 512


def _chip_number(path: Path) -> int:
    match = re.fullmatch(r"gpiochip(\d+)", path.name)
    return int(match[1]) if match else -1


def chip_labels(dev: Path = Path("/dev")) -> dict[int, str]:
    """Every GPIO chip the kernel offers, by number: its label (chips that cannot be opened are left out)."""
    import lgpio

    found: dict[int, str] = {}
    for path in sorted(dev.glob("gpiochip*"), key=_chip_number):
        number = _chip_number(path)
        if number < 0:
            continue
        try:
            handle = lgpio.gpiochip_open(number)
        except lgpio.error:
            continue
        try:
            _status, _lines, _name, label = lgpio.gpio_get_chip_info(handle)
        except lgpio.error:
            continue
        finally:
            lgpio.gpiochip_close(handle)
        found[number] = str(label)
    return found


def find_chip(labels: tuple[str, ...], dev: Path = Path("/dev")) -> int:
    """The number of the first chip, in the order of `labels`, that the kernel labels so."""
    found = chip_labels(dev)
    for label in labels:
        for number, chip_label in found.items():
            if chip_label == label:
                return number
    seen = ", ".join(f"gpiochip{n} {lab!r}" for n, lab in found.items()) or f"none in {dev}"
    raise PanelError(f"no GPIO chip labelled {' or '.join(labels)} (found: {seen})")


def board_info(label: str, lines: list[tuple[int, str]]) -> Any:
    """A gpiozero BoardInfo whose one "header" is the chip's lines: found by offset or line name.

    gpiozero's Pi pins take the line offset from the primary name `GPIO<offset>`. A line is found by its
    offset, its own name, and `GPIO<offset>` unless another line has that name: a chip whose line "GPIO17"
    is not at offset 17 is still read right, and on a SoC chip whose device tree names no lines (offset =
    BCM number) "GPIO17" still means line 17."""
    from gpiozero.pins import BoardInfo, HeaderInfo, PinInfo

    named = {name for _offset, name in lines if name}
    pins = {}
    for row, (offset, name) in enumerate(lines, start=1):
        by_offset = [] if f"GPIO{offset}" in named else [f"GPIO{offset}"]
        names = frozenset({offset, str(offset), *([name] if name else []), *by_offset})
        pins[offset] = PinInfo(offset, f"GPIO{offset}", names, "", row, 1, frozenset({"gpio"}))
    header = HeaderInfo(label, len(lines), 1, pins)
    blank: dict[str, Any] = {f: None for f in BoardInfo._fields}
    return BoardInfo(**{**blank, "model": label, "soc": label, "headers": {label: header}})


def chip_factory(pins: PinMap) -> Any:
    """lgpio's gpiozero factory on the pin map's chip, its lines named as the kernel names them."""
    import lgpio
    from gpiozero.pins.lgpio import LGPIOFactory

    number = find_chip(pins.chips)

    class ChipFactory(LGPIOFactory):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(chip=number)
            _status, count, _name, label = lgpio.gpio_get_chip_info(self._handle)
            lines = []
            for offset in range(min(int(count), MAX_LINES)):
                info = lgpio.gpio_get_line_info(self._handle, offset)
                lines.append((offset, str(info[3])))
            self._info = board_info(str(label), lines)

        def _get_board_info(self) -> Any:
            return self._info

    try:
        return ChipFactory()
    except lgpio.error as err:
        raise PanelError(f"gpiochip{number}: {err}") from err


def check_lines(pins: PinMap, dev: Path = Path("/dev")) -> tuple[list[str], list[str]]:
    """(what was found, problems) for the pin map on this machine's chip, without claiming a line: the
    running daemon holds them (its consumer label is lgpio's "lg"), and selftest must not take them away."""
    import lgpio

    number = find_chip(pins.chips, dev)
    handle = lgpio.gpiochip_open(number)
    try:
        _status, count, _name, label = lgpio.gpio_get_chip_info(handle)
        lines = [lgpio.gpio_get_line_info(handle, n) for n in range(min(int(count), MAX_LINES))]
    finally:
        lgpio.gpiochip_close(handle)
    found, problems = [f"gpiochip{number} {label!r}, {count} lines"], []
    for what, line in (
        ("consent", pins.consent),
        ("emergency", pins.emergency),
        ("led", pins.led),
        ("buzzer", pins.buzzer),
    ):
        match = [info for info in lines if line in (info[1], info[3])]
        if not match:
            problems.append(f"{what}: no line {line!r} on gpiochip{number}")
            continue
        _s, offset, flags, _n, user = match[0]
        used = f", in use by {user!r}" if flags & 1 else ""  # LG_GPIO_IS_KERNEL: claimed by someone
        found.append(f"{what} {line!r} = line {offset}{used}")
    return found, problems
