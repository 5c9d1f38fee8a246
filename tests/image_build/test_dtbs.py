"""image-build/lib/check-dtbs.py: what a Pi reads at boot. The committed facts of the DTBs Debian's kernel
ships (image-build/dtb-facts.json, written by the build from the DTBs on the image's FAT partition) are
checked against the config.txt lines the image sets; the facts reader runs on small DTBs compiled here with
dtc, the same flattened format as the kernel's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
SCRIPT = IMAGE_BUILD / "lib" / "check-dtbs.py"
FACTS = IMAGE_BUILD / "dtb-facts.json"
FIRMWARE_DATA = IMAGE_BUILD.parent / "firmware" / "mynabox" / "data"
CONFIG_LINES = IMAGE_BUILD / "rootfs-overlay" / "etc" / "default" / "raspi-firmware-custom"

# A Pi 3's shape as upstream writes it: i2c1 muxed to GPIO 2/3 (ALT0) by a pin group, the PM block whose
# driver is bcm2835_wdt; @I2C_STATUS@ and @OVERRIDES@ vary per test, @RANGES@ per board (where the ARM sees
# the peripherals: RANGES).
DTS = """/dts-v1/;
/ {
    model = "Test Pi";
    compatible = "raspberrypi,3-model-b-plus", "brcm,bcm2837";
    #address-cells = <1>;
    #size-cells = <1>;
    soc {
        #address-cells = <1>;
        #size-cells = <1>;
        @RANGES@
        gpio@7e200000 {
            compatible = "brcm,bcm2835-gpio";
            reg = <0x7e200000 0xb4>;
            i2c1_gpio2: i2c1_gpio2 { brcm,pins = <2 3>; brcm,function = <4>; };
            i2c0_gpio0: i2c0_gpio0 { brcm,pins = <0 1>; brcm,function = <4>; };
        };
        i2c@7e205000 {
            compatible = "brcm,bcm2835-i2c";
            reg = <0x7e205000 0x200>;
            pinctrl-0 = <&i2c0_gpio0>;
            status = "okay";
        };
        i2c@7e804000 {
            compatible = "brcm,bcm2835-i2c";
            reg = <0x7e804000 0x1000>;
            pinctrl-0 = <&i2c1_gpio2>;
            status = "@I2C_STATUS@";
        };
        watchdog@7e100000 {
            compatible = "brcm,bcm2835-pm", "brcm,bcm2835-pm-wdt";
            reg = <0x7e100000 0x114>;
        };
    };
    @OVERRIDES@
};
"""
RANGES = {
    "bcm2837": "ranges = <0x7e000000 0x3f000000 0x1000000>;",
    "bcm2711": "ranges = <0x7e000000 0xfe000000 0x1800000>;",
}
BOARDS = ("bcm2837-rpi-3-b", "bcm2837-rpi-3-b-plus", "bcm2837-rpi-zero-2-w", "bcm2711-rpi-4-b",
          "bcm2711-rpi-400", "bcm2711-rpi-cm4-io")  # fmt: skip


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dtb(
    tmp_path: Path, name: str, i2c_status: str = "okay", overrides: str = "", ranges: str | None = None
) -> Path:
    if shutil.which("dtc") is None:
        pytest.skip("dtc missing (scripts/install-deps.sh installs device-tree-compiler)")
    source = tmp_path / f"{name}.dts"
    ranges = RANGES.get(name.split("-", maxsplit=1)[0], "") if ranges is None else ranges
    text = DTS.replace("@I2C_STATUS@", i2c_status).replace("@OVERRIDES@", overrides)
    source.write_text(text.replace("@RANGES@", ranges))
    out = tmp_path / f"{name}.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(source)], check=True)
    return out


def facts_of(tmp_path: Path, dtbs: list[Path]) -> Path:
    done = run("facts", "linux-image-test", *dtbs)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "facts.json"
    path.write_text(done.stdout)
    return path


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.txt"
    path.write_text(text)
    return path


def test_the_shipped_dtbs_hold_what_the_box_needs_with_the_images_config() -> None:
    """Debian's DTBs as the image ships them (facts committed with the kernel's version) and the config.txt
    lines the image adds: I2C on GPIO 2/3 and the watchdog enabled on every supported board, and no
    dtparam or dtoverlay the DTBs cannot honour."""
    facts = json.loads(FACTS.read_text())
    assert facts["kernel"].startswith("linux-image-")
    done = run("check", FACTS, CONFIG_LINES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("I2C on GPIO 2/3: /soc/i2c@") >= len(BOARDS)


def test_the_facts_of_a_board_with_i2c_on_gpio_2_3_and_a_watchdog(tmp_path: Path) -> None:
    facts = json.loads(facts_of(tmp_path, [dtb(tmp_path, "bcm2837-rpi-3-b-plus")]).read_text())
    f = facts["dtbs"]["bcm2837-rpi-3-b-plus"]
    assert f["model"] == "Test Pi"
    assert f["i2c_gpio2_3"] == [{"path": "/soc/i2c@7e804000", "enabled": True}]  # not i2c0 on GPIO 0/1
    assert [w["path"] for w in f["watchdog"] if w["enabled"]] == ["/soc/watchdog@7e100000"]
    assert f["overrides"] == [] and f["symbols"] is False


def test_the_pm_watchdogs_cpu_address_comes_through_the_soc_ranges(tmp_path: Path) -> None:
    """Where a trial boot's stage writes to arm the PM watchdog: the node's bus address (0x7e100000)
    translated by /soc's ranges; a bus without ranges is not memory-mapped (None), and the committed facts
    of Debian's DTBs (a Pi 4's /soc maps into a two-cell parent) give each SoC's own place."""
    made = [dtb(tmp_path, "bcm2837-rpi-3-b"), dtb(tmp_path, "bcm2711-rpi-4-b")]
    bare = tmp_path / "bare"
    bare.mkdir()
    made.append(dtb(bare, "bcm2837-rpi-zero-2-w", ranges=""))
    found = json.loads(facts_of(tmp_path, made).read_text())["dtbs"]
    assert [w["cpu_address"] for w in found["bcm2837-rpi-3-b"]["watchdog"]] == ["3f100000"]
    assert [w["cpu_address"] for w in found["bcm2711-rpi-4-b"]["watchdog"]] == ["fe100000"]
    assert [w["cpu_address"] for w in found["bcm2837-rpi-zero-2-w"]["watchdog"]] == [None]
    shipped = json.loads(FACTS.read_text())["dtbs"]
    assert {b: shipped[b]["watchdog"][0]["cpu_address"] for b in BOARDS} == {
        b: "3f100000" if b.startswith("bcm2837") else "fe100000" for b in BOARDS
    }


def test_a_boot_stage_that_arms_a_pm_watchdog_elsewhere_than_the_dtb_fails(tmp_path: Path) -> None:
    """The check reads the slot's boot stage beside it (../boot/mynabox-boot.cmd): a table entry that
    misses a supported board, or names another address, fails the build."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "boot").mkdir()
    shutil.copy(SCRIPT, tmp_path / "lib" / SCRIPT.name)
    stage = (IMAGE_BUILD / "boot" / "mynabox-boot.cmd").read_text()
    assert stage.count(" broadcom/bcm2711-rpi-400.dtb ") == 1 and stage.count("setenv mb_pm fe100000;") == 1
    for broken, said in (
        (stage.replace("setenv mb_pm fe100000;", "setenv mb_pm 7e100000;"), "bcm2711-rpi-4-b: the boot stage"
         " arms a PM watchdog at 7e100000, the DTB has it at fe100000"),
        (stage.replace(" broadcom/bcm2711-rpi-400.dtb ", " "), "bcm2711-rpi-400: the boot stage arms a PM"
         " watchdog at None"),
    ):  # fmt: skip
        (tmp_path / "boot" / "mynabox-boot.cmd").write_text(broken)
        done = subprocess.run(
            [sys.executable, str(tmp_path / "lib" / SCRIPT.name), "check", str(FACTS), str(CONFIG_LINES)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 1 and said in done.stderr, done.stderr


def boards(tmp_path: Path, **kwargs: str) -> Path:
    return facts_of(tmp_path, [dtb(tmp_path, name, **kwargs) for name in BOARDS])


def test_a_disabled_i2c_bus_fails(tmp_path: Path) -> None:
    done = run("check", boards(tmp_path, i2c_status="disabled"), config(tmp_path, ""))
    assert done.returncode == 1
    assert "bcm2711-rpi-4-b: no enabled I2C controller on GPIO 2/3" in done.stderr


def test_a_dtparam_the_dtb_has_no_override_for_fails(tmp_path: Path) -> None:
    """Upstream DTBs have no __overrides__: the firmware cannot apply dtparam=i2c_arm=on to them."""
    done = run("check", boards(tmp_path), config(tmp_path, "dtparam=i2c_arm=on\n"))
    assert done.returncode == 1
    assert "bcm2837-rpi-zero-2-w: dtparam=i2c_arm is not an override of this DTB" in done.stderr
    with_overrides = tmp_path / "ov"
    with_overrides.mkdir()
    facts = boards(with_overrides, overrides='__overrides__ { i2c_arm = "okay"; };')
    assert run("check", facts, config(tmp_path, "dtparam=i2c_arm=on\n")).returncode == 0


def test_a_dtoverlay_without_its_file_or_symbols_fails(tmp_path: Path) -> None:
    done = run("check", boards(tmp_path), config(tmp_path, "dtoverlay=i2c-rtc,ds3231\n"), tmp_path)
    assert done.returncode == 1
    assert "dtoverlay=i2c-rtc: no overlays/i2c-rtc.dtbo" in done.stderr
    assert "dtoverlay needs __symbols__" in done.stderr


def test_a_missing_board_and_a_file_that_is_no_dtb_fail(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, [dtb(tmp_path, "bcm2711-rpi-4-b")])
    assert "bcm2837-rpi-zero-2-w.dtb: not shipped" in run("check", facts, config(tmp_path, "")).stderr
    junk = tmp_path / "junk.dtb"
    junk.write_bytes(b"\0" * 64)
    done = run("facts", "linux-image-test", junk)
    assert done.returncode == 1 and "not a readable device tree" in done.stderr


def test_every_pin_of_the_packaged_pin_map_is_a_header_line_on_every_supported_board() -> None:
    """The kernel names the pin map's lines GPIO<n> on every board (the GPIO block's gpio-line-names), so
    the same map runs on a Pi and on the boot test's simulated chip, which takes the Pi 3 B+'s names."""
    pins = tomllib.loads((FIRMWARE_DATA / "pins.toml").read_text(encoding="utf-8"))
    wanted = {
        f"GPIO{v}" if isinstance(v, int) else v
        for section in ("buttons", "led", "buzzer")
        for k, v in pins.get(section, {}).items()
        if not k.endswith("_s") and isinstance(v, int | str)
    }
    assert len(wanted) == 4
    dtbs = json.loads(FACTS.read_text())["dtbs"]
    for board in BOARDS:
        assert wanted <= set(dtbs[board]["gpio_line_names"]), board
