"""Run inside the VM of `tests/hw/gpiosim_vm.sh`: the box's panel through lgpio on a real kernel gpiochip.

gpio-sim stands in for the Pi's SoC controller (label pinctrl-bcm2835, lines named GPIOn): what the firmware
drives is read back from gpio-sim's sysfs, and the buttons are pressed by pulling their lines low there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mynabox.adapters.gpiochip import check_lines, chip_factory
from mynabox.adapters.panel import Panel, load_pin_map
from mynabox.core.effects import LedMode, Tone
from mynabox.core.events import ClearRequested, ConsentPressed, Event
from mynabox.vocab import ConsentMode

SIM = Path(sys.argv[1])


def value(line: int) -> int:
    return int((SIM / f"sim_gpio{line}" / "value").read_text())


def pull(line: int, how: str) -> None:
    (SIM / f"sim_gpio{line}" / "pull").write_text(how)


def oled_on_a_kernel_i2c_bus() -> dict[str, bool]:
    """luma's ssd1306 on /dev/i2c-N of i2c-stub. No device at 0x3d: the init's first write gets ENODEV. At
    0x3c the stub takes SMBus block writes but has no plain I2C transfer, which luma's clear() at init uses
    for the frame: EOPNOTSUPP. Either way the display is a failed part (at start), shows nothing, is tried
    again, and nothing raises."""
    from mynabox.adapters.oled import Display, Oled
    from mynabox.render.catalog import catalog
    from mynabox.render.draw import render
    from mynabox.vocab import Part

    port = next(
        int(d.name.split("-")[1])
        for d in Path("/sys/class/i2c-dev").iterdir()
        if (d / "name").read_text().strip() == "SMBus stub driver"
    )
    results = {}
    for address, errno_text in ((0x3D, "No such device"), (0x3C, "Operation not supported")):
        posted: list[Event] = []
        display = Display(lambda a=address: Oled("ssd1306", i2c_port=port, i2c_address=a), posted.append)
        display.show(render(catalog()["ready"]))
        display.retry()
        print(f"OLED at 0x{address:02x}:", display.kept.problem)
        results[f"OLED at 0x{address:02x} on a kernel I2C bus: failed, the rest goes on"] = (
            display.failed() == (Part.DISPLAY,)
            and errno_text in (display.kept.problem or "")
            and display.last is None
            and posted == []  # still failed at the retry: nothing new to report
        )
    return results


def main() -> int:
    pins = load_pin_map()  # the packaged map: [chip] labels, lines by name
    print("check_lines:", check_lines(pins))
    events: list[Event] = []
    panel = Panel(pins, events.append, make_factory=chip_factory)
    print("failed parts:", panel.failed(), panel.buttons.problem, panel.led.problem, panel.buzzer.problem)
    print("check_lines while held:", check_lines(pins))
    results = {}
    panel.set_led(LedMode.OK)
    time.sleep(0.05)
    results["LED on (line 22 high)"] = value(22) == 1
    panel.set_led(LedMode.OFF)
    time.sleep(0.05)
    results["LED off"] = value(22) == 0
    panel.buzz(Tone.ERROR)  # one 0.8 s tone
    time.sleep(0.2)
    results["buzzer sounding (line 23 high)"] = value(23) == 1
    time.sleep(1.0)
    results["buzzer silent after its tone"] = value(23) == 0
    panel.set_led(LedMode.BUSY)  # 0.15 s on / 0.15 s off
    seen = set()
    for _ in range(40):
        seen.add(value(22))
        time.sleep(0.02)
    results["LED blinks"] = seen == {0, 1}
    for line, mode in ((17, ConsentMode.ORAL_CONSENT), (27, ConsentMode.LIFE_SAVING_EXCEPTION)):
        events.clear()
        pull(line, "pull-down")  # the switch closes to GND
        time.sleep(0.3)
        pull(line, "pull-up")
        time.sleep(0.3)
        results[f"press on line {line}: {mode.value}"] = events == [ConsentPressed(mode)]
    events.clear()
    pull(17, "pull-down")
    pull(27, "pull-down")
    time.sleep(pins.clear_hold_s + 0.5)
    pull(17, "pull-up")
    pull(27, "pull-up")
    time.sleep(0.3)
    results["both held: one clear"] = events == [ClearRequested()]
    panel.retry()  # the probe reads every line
    results["probe keeps them working"] = panel.failed() == ()
    panel.close()
    results.update(oled_on_a_kernel_i2c_bus())
    for name, ok in results.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print("events:", events)
    print("ALL-OK" if all(results.values()) else "SOME-FAILED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
