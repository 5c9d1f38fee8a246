"""[update]: the idle time before the switch, the boot state and the reboot command; the health limit is no
longer here (mynabox-health.service's own setting), and a config that still has it loads with a word."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mynabox.config import ConfigError, load_config
from mynabox.config.model import UpdateConfig
from support.boxfiles import VALID, make_box

from .test_load import env, write


@pytest.fixture
def box(tmp_path: Path) -> Path:
    return make_box(tmp_path)


def test_defaults_are_15_minutes_and_systemds_reboot(box: Path) -> None:
    config = load_config(write(box, VALID), environ=env(box))
    assert config.update == UpdateConfig()
    assert config.update.idle_min == 15.0
    assert config.update.reboot_command.split() == ["/usr/bin/systemctl", "reboot"]


def test_values_load(box: Path) -> None:
    text = VALID + '\n[update]\nidle_min = 30\nreboot_command = "/bin/true now"\n'
    config = load_config(write(box, text), environ=env(box))
    assert config.update.idle_min == 30.0
    assert config.update.reboot_command == "/bin/true now"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("idle_min = -1", "update.idle_min: -1 is out of range (0..1440)"),
        ("idle_min = 99999", "out of range"),
        ('idle_min = "15"', "expected a number"),
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


@pytest.mark.parametrize("value", ["5", "0", '"five"'])
def test_a_config_still_holding_the_health_limit_loads_and_says_it_is_not_read(
    box: Path, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Boxes keep their config across updates; one copied from the old example has the key. Refused, the new
    # firmware's daemon would exit 78 and its health check would roll every such box back.
    with caplog.at_level(logging.WARNING):
        config = load_config(
            write(box, VALID + f"\n[update]\nhealth_limit_min = {value}\n"), environ=env(box)
        )
    assert config.update == UpdateConfig()
    assert [r.getMessage() for r in caplog.records] == [
        "config: update.health_limit_min is no longer read (mynabox-health.service's MYNABOX_HEALTH_LIMIT_S"
        " sets the limit): remove it"
    ]
    assert not hasattr(config.update, "health_limit_min")
