"""The state partition's grower (the image runs it in the initramfs) on a real disk: a loop device over a
card image with the image's four-partition MBR, grown as a bigger card would be. Root only (loop devices)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

GROW = Path(__file__).resolve().parents[2] / "image-build/rootfs-overlay/usr/lib/mynabox/grow-state"
MIB = 2048  # sectors

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(shutil.which(t) for t in ("losetup", "sfdisk", "partx", "mkfs.ext4", "blkid")),
    reason="needs root, losetup, sfdisk, partx, mkfs.ext4 and blkid (scripts/install-deps.sh)",
)


def card(path: Path, layout: list[tuple[int, int]], mib: int) -> None:
    """A card of `mib` MiB, MBR partitions at (start, size) MiB, laid out as image-build/genimage.cfg."""
    with path.open("wb") as f:
        f.truncate(mib * 1024 * 1024)
    table = "label: dos\n" + "".join(f"start={s * MIB}, size={n * MIB}, type=83\n" for s, n in layout)
    subprocess.run(["sfdisk", "--quiet", str(path)], input=table, text=True, check=True)


class Loop:
    """The card image and its partitioned loop device; the device is detached when the test ends."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.dev = ""

    def attach(self) -> str:
        argv = ["losetup", "--find", "--show", "--partscan", str(self.image)]
        self.dev = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
        # Some kernels attach without scanning (no udev here): add the partitions as the kernel sees them.
        if not Path(f"/sys/class/block/{Path(self.dev).name}p1").exists():
            subprocess.run(["partx", "--add", self.dev], capture_output=True, check=True)
        return self.dev


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    it = Loop(tmp_path / "card.img")
    yield it
    if it.dev:
        subprocess.run(["losetup", "--detach", it.dev], check=False)


def sysfs(dev: str, field: str) -> int:
    return int(Path(f"/sys/class/block/{Path(dev).name}/{field}").read_text())


def grow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(GROW), *args], capture_output=True, text=True, timeout=60, check=False)


def dump(image: Path) -> str:
    return subprocess.run(["sfdisk", "--dump", str(image)], capture_output=True, text=True, check=True).stdout


def test_a_bigger_card_grows_the_last_partition_to_its_end_and_only_that_one(loop: Loop) -> None:
    image = loop.image
    card(image, [(1, 4), (5, 8), (13, 8), (21, 8)], 29)
    image_size = 64 * 1024 * 1024
    os.truncate(image, image_size)  # the 29 MiB image written to a 64 MiB card
    dev = loop.attach()
    part = f"{dev}p4"
    before = dump(image).splitlines()
    subprocess.run(["mkfs.ext4", "-q", "-L", "mynabox-state", part], check=True)

    done = grow()  # by its label, as the initramfs does
    assert done.returncode == 0, done.stderr
    assert "grown from 8 to" in done.stdout
    end = sysfs(part, "start") + sysfs(part, "size")
    assert image_size // 512 - end < 4 * MIB, "the kernel sees the partition reach the card's end"
    after = dump(image).splitlines()
    # Partitions 1-3 unchanged, partition 4 starts where it did and is longer.
    assert [ln for ln in after if ln.startswith(f"{image}") and not ln.startswith(f"{image}4 :")] == [
        ln for ln in before if ln.startswith(f"{image}") and not ln.startswith(f"{image}4 :")
    ]
    p4 = next(ln for ln in after if ln.startswith(f"{image}4 :")).replace(" ", "")
    assert f"start={21 * MIB}," in p4
    # The file system is still there (x-systemd.growfs grows it after the mount).
    label = subprocess.run(["blkid", "-L", "mynabox-state"], capture_output=True, text=True, check=False)
    assert label.stdout.strip() == part

    again = grow(part)
    assert again.returncode == 0, again.stderr
    assert "already fills" in again.stdout
    assert dump(image).splitlines() == after


def test_a_state_partition_that_is_not_the_last_is_refused_and_nothing_changes(loop: Loop) -> None:
    image = loop.image
    card(image, [(1, 4), (5, 8), (21, 8), (13, 8)], 29)  # partition 4 lies before partition 3
    os.truncate(image, 64 * 1024 * 1024)
    dev = loop.attach()
    before = dump(image)
    done = grow(f"{dev}p4")
    assert done.returncode == 1
    assert "not the last partition" in done.stderr
    assert dump(image) == before


def test_a_whole_disk_is_refused(loop: Loop) -> None:
    image = loop.image
    card(image, [(1, 4), (5, 8), (13, 8), (21, 8)], 40)
    dev = loop.attach()
    before = dump(image)
    done = grow(dev)
    assert done.returncode == 1
    assert "is not a partition" in done.stderr
    assert dump(image) == before


def test_no_state_partition_is_nothing_to_do() -> None:
    # Here no device carries the label (the test's loop devices are detached after each test).
    if subprocess.run(["blkid", "-L", "mynabox-state"], capture_output=True, check=False).returncode == 0:
        pytest.skip("a device on this machine carries the label mynabox-state")
    done = grow()
    assert done.returncode == 0, done.stderr
    assert "nothing to grow" in done.stdout
