"""The damage test's edits (image-build/damage-test.py) on a real FAT partition inside an MBR card image,
with mtools as the test uses them: each case damages what it says and names the damage boot.scr reports
(the same reading rules: mynabox.update.bootstate; boot.scr itself runs these cases in test_uboot_script)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from mynabox.update import bootstate as bs

from .scripts import fat_card, load

pytestmark = pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="needs dosfstools and mtools"
)


def damage_test() -> ModuleType:
    return load("damage-test")


def card(tmp_path: Path, newest: int) -> Path:
    """An MBR card whose first partition is a FAT holding both copies, copy `newest` the newer."""
    image = fat_card(tmp_path)
    dt = damage_test()
    for copy in (0, 1):
        seq = 6 if copy == newest else 5
        dt.fat_put(image, dt.NAMES[copy], bs.encode(replace(bs.INITIAL, seq=seq)), tmp_path)
    return image


@pytest.mark.parametrize("newest", [0, 1])
@pytest.mark.parametrize("case", ["truncated", "zeroed", "both"])
def test_each_case_damages_what_it_names(tmp_path: Path, case: str, newest: int) -> None:
    dt = damage_test()
    image = card(tmp_path, newest)
    assert dt.newest(image) == newest
    said = dt.damage(SimpleNamespace(image=image, work=tmp_path), case)()
    reading = bs.read(dt.fat_get(image, dt.NAMES[0]), dt.fat_get(image, dt.NAMES[1]))
    assert said == reading.damage.value
    if case == "both":
        assert reading.damage is bs.Damage.BOTH_BAD and reading.state == bs.DEFAULT
    else:
        assert said == f"copy{newest}-bad"
        assert reading.source == 1 - newest and reading.state.seq == 5  # the older copy wins
    sizes = {len(dt.fat_get(image, n) or b"") for n in dt.NAMES}
    assert sizes <= {100, bs.SIZE}
