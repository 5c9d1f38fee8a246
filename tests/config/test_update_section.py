"""[update]: the idle time before the switch, the health limit, the boot state and the reboot command."""

from __future__ import annotations

from pathlib import Path

import pytest

from mynabox.config import ConfigError, load_config
from mynabox.config.model import UpdateConfig
from support.boxfiles import VALID, make_box

from .test_load import env, write


@pytest.fixture
def box(tmp_path: Path) -> Path:
    return make_box(tmp_path)


def test_defaults_are_15_and_5_minutes(box: Path) -> None:
    config = load_config(write(box, VALID), environ=env(box))
    assert config.update == UpdateConfig()
    assert (config.update.idle_min, config.update.health_limit_min) == (15.0, 5.0)
    assert config.update.reboot_command.split() == ["/usr/bin/systemctl", "reboot"]


def test_values_load(box: Path) -> None:
    text = VALID + '\n[update]\nidle_min = 30\nhealth_limit_min = 2.5\nreboot_command = "/bin/true now"\n'
    config = load_config(write(box, text), environ=env(box))
    assert (config.update.idle_min, config.update.health_limit_min) == (30.0, 2.5)
    assert config.update.reboot_command == "/bin/true now"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("idle_min = -1", "update.idle_min: -1 is out of range (0..1440)"),
        ("idle_min = 99999", "out of range"),
        ('idle_min = "15"', "expected a number"),
        ("health_limit_min = 0", "update.health_limit_min: 0 is out of range (0.5..60)"),
        ("health_limit_min = 120", "out of range"),
        ('reboot_command = "systemctl reboot"', "update.reboot_command"),  # not an absolute path
        ('reboot_command = "/bin/sh -c \\"reboot\\u0000\\""', "update.reboot_command"),
        ('reboot_command = ""', "update.reboot_command"),
        ("idle_minutes = 5", "idle_minutes"),  # a typo is named, not ignored
    ],
)
def test_bad_values_are_refused_with_the_key(box: Path, line: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(box, VALID + f"\n[update]\n{line}\n"), environ=env(box))
    assert says in "\n".join(str(i) for i in info.value.issues)
