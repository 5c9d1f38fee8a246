"""boot.scr under Debian's U-Boot itself (qemu_arm64 as qemu's -bios): the slot it picks and the state it
writes back, on small disks holding each boot-state case; and the second stage it sources from the chosen
slot's own /boot/mynabox-boot.scr (missing or corrupt: a try spent, then the fallback). No kernel: each
slot's /boot holds markers of different sizes, so the initramfs size U-Boot prints proves which partition
it loaded from; `booti` refuses the marker, the second stage returns and the stub resets, which ends qemu
(-no-reboot).

Each run's expectation comes from mynabox.update.bootstate (the box's reader and writer), so this also
proves the two sides agree byte for byte. The seconds each U-Boot run takes are printed (`-s` shows them).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs
from support.bootdisk import (
    STAGE_CMD,
    STAGE_PATH,
    STUB_CMD,
    Disk,
    cut_uboot,
    make_boot_script,
    make_disk,
    missing_tools,
    put_stage,
    ran_boot_scr,
    run_uboot,
)

from .seqcases import CASES, SeqCase

BOOT_CMD = STUB_CMD
INITRD_SIZE = {"A": 5, "B": 9}
PARTUUID_SUFFIX = {"A": "02", "B": "03"}
PART = {"A": 2, "B": 3}
RUN_SECONDS: list[float] = []
TRIAL_LINE = "mynabox: slot {slot}: on trial: no early watchdog on this board"

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"missing: {', '.join(missing_tools())}")


def slot_trees(work: Path) -> dict[str, Path]:
    """Each slot's tree with its marker kernel and initramfs (the second stage: make_disk adds it)."""
    trees = {}
    for slot in ("A", "B"):
        boot = work / f"slot-{slot}" / "boot"
        boot.mkdir(parents=True)
        # As Debian's kernel-img.conf link_in_boot = yes makes them: U-Boot follows ext4 symbolic links.
        (boot / "vmlinuz-test").write_bytes(f"kernel-{slot}\n".encode())
        (boot / "initrd.img-test").write_bytes(b"i" * INITRD_SIZE[slot])
        (boot / "vmlinuz").symlink_to("vmlinuz-test")
        (boot / "initrd.img").symlink_to("initrd.img-test")
        trees[slot] = work / f"slot-{slot}"
    return trees


def disk_with(work: Path, trees: dict[str, Path], stage: Path | None = STAGE_CMD) -> Disk:
    make_boot_script(BOOT_CMD, work / "boot.scr")
    return make_disk(
        work / "disk.img", work, {"boot.scr": (work / "boot.scr").read_bytes()}, trees, stage=stage
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bootdisk")
    return disk_with(work, slot_trees(work)).path


@pytest.fixture
def disk(template: Path, tmp_path: Path) -> Disk:
    path = tmp_path / "disk.img"
    shutil.copyfile(template, path)
    return Disk(path)


@pytest.fixture(scope="module", autouse=True)
def _print_times() -> object:
    yield
    if RUN_SECONDS:
        print(
            f"\nU-Boot runs: {len(RUN_SECONDS)}, each {min(RUN_SECONDS):.2f}-{max(RUN_SECONDS):.2f} s, "
            f"total {sum(RUN_SECONDS):.1f} s"
        )


def put(disk: Disk, tmp: Path, copy0: bytes | None, copy1: bytes | None) -> None:
    for index, blob in ((0, copy0), (1, copy1)):
        if blob is not None:
            disk.write_fat(f"bootstate.{index}", blob, tmp)


def power_on(disk: Disk) -> tuple[str | None, str]:
    """One U-Boot run; returns the slot it booted (None when it reset without one) and its console."""
    run = run_uboot(disk)
    RUN_SECONDS.append(run.seconds)
    assert ran_boot_scr(run.console), run.console
    assert "resetting" in run.console, run.console  # the script ran to its end
    found = re.search(r"mynabox: slot ([AB]): kernel, initramfs 0x[0-9a-f]+:([0-9a-f]+), .*", run.console)
    if found is None:
        assert "mynabox: booting slot" not in run.console, run.console
        return None, run.console
    slot, size = found.group(1), int(found.group(2), 16)
    assert size == INITRD_SIZE[slot], f"slot {slot}'s initramfs came from another partition: {run.console}"
    # The stub announced the slot, its second stage ran, booti refused the marker and the stub reset. On a
    # trial boot the stage looked for the early watchdog first (this machine has none: test_uboot_early_
    # watchdog.py runs it with the box's i6300esb).
    lines = [ln for ln in stage_lines(run.console, slot) if ln != TRIAL_LINE.format(slot=slot)]
    assert lines == [
        f"mynabox: booting slot {slot} from virtio 0:{PART[slot]}",
        f"mynabox: slot {slot}: boot stage of the slot (/boot/mynabox-boot.scr), stub 1",
        found.group(0),
        f"mynabox: slot {slot} did not boot: reset (its try is spent)",
    ], run.console
    line = found.group(0)
    assert f"rauc.slot={slot}" in line
    assert f"root=PARTUUID=6d796e61-{PARTUUID_SUFFIX[slot]}" in line
    return slot, run.console


def stage_lines(console: str, slot: str) -> list[str]:
    """The stub's line naming the slot and every line after it about that slot, in order."""
    return [
        line
        for line in console.splitlines()
        if line.startswith((f"mynabox: booting slot {slot} ", f"mynabox: slot {slot}"))
    ]


def expect_boot(disk: Disk) -> tuple[str | None, bs.Reading, bs.BootState, str]:
    """Runs U-Boot and checks it against the model: slot, damage on the command line, and the exact bytes
    written into the other copy (the copy read stays as it was)."""
    before = (disk.read_fat("bootstate.0"), disk.read_fat("bootstate.1"))
    reading = bs.read(*before)
    want_slot, after = bs.boot(reading.state)
    want = bs.successor(reading, after)
    slot, console = power_on(disk)
    assert slot == want_slot, console
    if slot is not None:
        assert f"mynabox.bootstate={reading.damage.value}" in console
        on_trial = reading.state.trial == slot
        assert (TRIAL_LINE.format(slot=slot) in console) == on_trial, console
        assert f"mynabox.earlywdt={'none' if on_trial else 'off'} " in console, console
    written = disk.read_fat(f"bootstate.{reading.write_to}")
    assert written == bs.encode(want), console
    if reading.source is not None:
        assert disk.read_fat(f"bootstate.{reading.source}") == before[reading.source]
    return slot, reading, want, console


def test_fresh_card_boots_a_and_writes_copy_1(disk: Disk, tmp_path: Path) -> None:
    put(disk, tmp_path, bs.encode(bs.INITIAL), bs.encode(replace(bs.INITIAL, seq=0)))
    slot, reading, written, _ = expect_boot(disk)
    assert (slot, reading.damage, reading.write_to) == ("A", bs.Damage.OK, 1)
    assert (written.a_left, written.seq) == (2, 2)


def test_a_good_spends_one_try(disk: Disk, tmp_path: Path) -> None:
    good = bs.BootState(("A", "B"), 3, 3, seq=0x41)
    put(disk, tmp_path, bs.encode(replace(good, seq=0x40)), bs.encode(good))
    slot, reading, written, _ = expect_boot(disk)
    assert (slot, reading.source, reading.write_to) == ("A", 1, 0)
    assert (written.a_left, written.b_left, written.seq) == (2, 3, 0x42)


def test_b_trying_counts_down_then_falls_back_to_a(disk: Disk, tmp_path: Path) -> None:
    trying = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=7), "B")
    put(disk, tmp_path, bs.encode(trying), bs.encode(replace(trying, seq=6)))
    seen = []
    for _ in range(4):
        slot, reading, written, _ = expect_boot(disk)
        seen.append((slot, reading.write_to, written.b_left, written.a_left))
    # B's three tries land alternately in copy 1, 0, 1; then A boots and B stays at 0 tries.
    assert seen == [("B", 1, 2, 3), ("B", 0, 1, 3), ("B", 1, 0, 3), ("A", 0, 0, 2)]


def test_newest_copy_truncated_boots_from_the_older(disk: Disk, tmp_path: Path) -> None:
    old = bs.BootState(("A", "B"), 3, 3, seq=6)
    new = bs.set_primary(replace(old, seq=7), "B")
    put(disk, tmp_path, bs.encode(old), bs.encode(new)[:100])
    slot, reading, written, _ = expect_boot(disk)
    assert (slot, reading.damage, reading.write_to) == ("A", bs.Damage.COPY1_BAD, 1)
    assert written.seq == 7


def test_one_copy_zeroed_is_reported_and_rewritten(disk: Disk, tmp_path: Path) -> None:
    state = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=3), "B")
    put(disk, tmp_path, bytes(bs.SIZE), bs.encode(state))
    slot, reading, _, console = expect_boot(disk)
    assert (slot, reading.damage, reading.write_to) == ("B", bs.Damage.COPY0_BAD, 0)
    assert "mynabox.bootstate=copy0-bad" in console


def test_both_copies_damaged_boot_the_default_order_and_say_so(disk: Disk, tmp_path: Path) -> None:
    state = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=3), "B")
    broken = bytearray(bs.encode(state))
    broken[20] ^= 0x01
    put(disk, tmp_path, bytes(broken), bs.encode(state)[:300])
    slot, reading, written, console = expect_boot(disk)
    assert (slot, reading.damage, reading.write_to) == ("A", bs.Damage.BOTH_BAD, 0)
    assert written == replace(bs.DEFAULT, a_left=2, seq=1)
    assert "mynabox.bootstate=both-bad" in console


def test_both_copies_missing_count_as_damaged(disk: Disk) -> None:
    slot, reading, _, _ = expect_boot(disk)
    assert (slot, reading.damage) == ("A", bs.Damage.BOTH_BAD)


def test_older_valid_copy_beats_newer_damaged_copy(disk: Disk, tmp_path: Path) -> None:
    older = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=9), "B")
    newer = bytearray(bs.encode(bs.BootState(("A", "B"), 3, 3, seq=10)))
    newer[-1] ^= 0xFF  # one byte in the padding: the checksum still catches it
    put(disk, tmp_path, bs.encode(older), bytes(newer))
    slot, reading, _, _ = expect_boot(disk)
    assert (slot, reading.source, reading.damage) == ("B", 0, bs.Damage.COPY1_BAD)


def test_a_longer_copy_is_read_by_its_first_512_bytes_on_both_sides(disk: Disk, tmp_path: Path) -> None:
    newer = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=5), "B")
    put(disk, tmp_path, bs.encode(replace(newer, seq=4, order=("A", "B"))), bs.encode(newer) + b"x" * 100)
    slot, reading, _, _ = expect_boot(disk)
    assert (slot, reading.source, reading.damage) == ("B", 1, bs.Damage.OK)


def test_extra_kernel_words_come_from_an_optional_file(disk: Disk, tmp_path: Path) -> None:
    put(disk, tmp_path, bs.encode(bs.INITIAL), None)
    disk.write_fat("cmdline-extra.env", b"mb_extra=systemd.debug_shell=ttyAMA0 quiet\n", tmp_path)
    slot, _, _, console = expect_boot(disk)
    assert slot == "A"
    assert "rauc.slot=A mynabox.bootstate=copy1-bad systemd.debug_shell=ttyAMA0 quiet" in console


def test_the_slots_kernel_arms_the_boots_softdog(disk: Disk, tmp_path: Path) -> None:
    """Issue 20's hang before systemd: each slot's own stage starts the kernel with softdog armed at its
    load (the initramfs loads it; mynabox-softdog-handover disarms it), beside panic=10."""
    for state in (bs.set_primary(bs.INITIAL, "B"), replace(bs.INITIAL, seq=50)):
        put(disk, tmp_path, bs.encode(state), None)
        slot, _, _, console = expect_boot(disk)
        line = next(ln for ln in console.splitlines() if "kernel, initramfs" in ln)
        assert slot == state.order[0], console
        assert "softdog.soft_active_on_boot=1 softdog.soft_margin=120 panic=10 " in line, line


def test_no_tries_left_resets_every_slot_and_boots_nothing(disk: Disk, tmp_path: Path) -> None:
    spent = bs.BootState(("A",), 0, 0, seq=4)
    put(disk, tmp_path, bs.encode(spent), bs.encode(replace(spent, seq=3)))
    slot, _, written, console = expect_boot(disk)
    assert slot is None
    assert "no slot has tries left" in console
    assert (written.a_left, written.b_left) == (3, 3)


def sealed_copy(order: bytes, seq: int, b_left: int = 3) -> bytes:
    """A copy as a writer with the trial word writes it, spelt out here (not by bs.encode); A has 3 tries."""
    fields = [b"BOOT_A_LEFT=3", b"BOOT_B_LEFT=%x" % b_left, b"BOOT_ORDER=" + order, b"BOOT_SEQ=%x" % seq]
    data = b"\0".join(fields).ljust(bs.SIZE - 4, b"\0")
    return zlib.crc32(data).to_bytes(4, "little") + data


def test_the_slot_on_trial_rides_in_boot_order_through_the_frozen_stub(disk: Disk, tmp_path: Path) -> None:
    """The slot's second stage learns from BOOT_ORDER's word `trialB` that B is on trial (its early
    watchdog): the stub, which keeps only its four names, boots B from `B A trialB` and writes the word back
    with B's try spent, exactly as the box's model predicts; an order of only the word names no slot (as
    any order of unknown words): every slot gets its tries again, the word kept, and U-Boot resets."""
    put(disk, tmp_path, sealed_copy(b"B A trialB", 7), sealed_copy(b"B A trialB", 6))
    slot, reading, written, console = expect_boot(disk)
    assert (slot, reading.source, reading.state.trial) == ("B", 0, "B")
    assert written == bs.BootState(("B", "A"), 3, 2, 8, trial="B")
    assert disk.read_fat("bootstate.1") == sealed_copy(b"B A trialB", 8, b_left=2)
    assert "mynabox: wrote bootstate.1: order B A trialB, A 3, B 2, seq 8" in console
    put(disk, tmp_path, sealed_copy(b"trialB", 9), None)
    slot, reading, written, console = expect_boot(disk)
    assert (slot, reading.state.order, written) == (None, (), bs.BootState((), 3, 3, 10, trial="B"))
    assert "no slot has tries left" in console


def test_a_fix_in_the_slots_own_boot_stage_reaches_the_box_with_the_flashed_stub(tmp_path: Path) -> None:
    """What issue 20 needed twice (panic=10, the Pi DTB copy): a change after the slot choice, shipped in a
    slot (as a bundle ships it), takes effect under the unchanged FAT stub; the other slot keeps its own."""
    trees = slot_trees(tmp_path)
    fixed = tmp_path / "fixed.cmd"
    text = STAGE_CMD.read_text()
    assert text.count(" panic=10 rauc.slot=") == 1
    fixed.write_text(text.replace(" panic=10 rauc.slot=", " panic=10 mynabox.fix=from-slot-b rauc.slot="))
    put_stage(trees["B"], fixed)
    disk = disk_with(tmp_path, trees)
    disk.write_fat("bootstate.0", bs.encode(bs.set_primary(bs.INITIAL, "B")), tmp_path)
    slot, _, _, console = expect_boot(disk)
    assert slot == "B" and "panic=10 mynabox.fix=from-slot-b rauc.slot=B" in console, console
    disk.write_fat("bootstate.0", bs.encode(replace(bs.INITIAL, seq=9)), tmp_path)
    slot, _, _, console = expect_boot(disk)
    assert slot == "A" and "mynabox.fix" not in console, console


NO_STAGE = "mynabox: slot B: no boot stage /boot/mynabox-boot.scr: reset (its try is spent)"
BAD_STAGE = (
    "mynabox: slot B: its boot stage /boot/mynabox-boot.scr did not run (bad image): reset (its try is spent)"
)


def broken_stage(case: str, tree: Path) -> tuple[str, ...]:
    """Damages slot `tree`'s second stage as `case` says; returns the stub's line(s) it may say for it."""
    stage = tree / STAGE_PATH
    data = stage.read_bytes()
    if case == "missing":
        stage.unlink()
        return (NO_STAGE,)
    if case == "one-byte-flipped":  # in the script, past the 64-byte header: the data CRC catches it
        data = data[:200] + bytes([data[200] ^ 0x04]) + data[201:]
    elif case == "torn":  # a write cut short: the header says more than the file holds
        data = data[: len(data) // 2]
    elif case == "header-only":
        data = data[:64]
    elif case == "zeroed":
        data = bytes(len(data))
    elif case == "not-an-image":  # the script's text itself, without the legacy header
        data = STAGE_CMD.read_bytes()
    elif case == "empty":  # U-Boot's load of an empty file fails (2023.01) or loads nothing: either way
        data = b""
        stage.write_bytes(data)
        return (NO_STAGE, BAD_STAGE)
    stage.write_bytes(data)
    return (BAD_STAGE,)


@pytest.mark.parametrize(
    "case", ["missing", "empty", "one-byte-flipped", "torn", "header-only", "zeroed", "not-an-image"]
)
def test_a_slot_whose_boot_stage_is_missing_or_corrupt_spends_its_tries_and_falls_back(
    tmp_path: Path, case: str
) -> None:
    """B (primary after an install) with a broken second stage: each boot the stub names B, spends its try,
    says why B did not start and resets, and the state the next boot reads has one try less, as for a
    kernel that does not boot; after three, A boots through its own stage."""
    trees = slot_trees(tmp_path)
    for tree in trees.values():
        put_stage(tree)
    may_say = broken_stage(case, trees["B"])
    disk = disk_with(tmp_path, trees, stage=None)
    trying = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=7), "B")
    put(disk, tmp_path, bs.encode(trying), bs.encode(replace(trying, seq=6)))
    for left in (2, 1, 0):
        run = run_uboot(disk)
        RUN_SECONDS.append(run.seconds)
        lines = stage_lines(run.console, "B")
        assert lines[0] == "mynabox: booting slot B from virtio 0:3" and lines[1:] in [
            [x] for x in may_say
        ], run.console
        assert "resetting" in run.console and "Starting kernel" not in run.console, run.console
        after = bs.read(disk.read_fat("bootstate.0"), disk.read_fat("bootstate.1"))
        assert (after.damage, after.state.order, after.state.b_left, after.state.a_left) == (
            bs.Damage.OK,
            ("B", "A"),
            left,
            3,
        ), run.console
    slot, _, written, _ = expect_boot(disk)
    assert (slot, written.b_left, written.a_left) == ("A", 0, 2)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sequence_numbers_at_the_top_and_in_foreign_forms_as_both_sides_take_them(
    disk: Disk, tmp_path: Path, case: SeqCase
) -> None:
    """One table (tests/update/seqcases.py) for U-Boot and the box: the copy read, the damage said, the
    sequence number written; and the box's writer, given the same two copies, writes the same bytes."""
    copies = case.copies()
    put(disk, tmp_path, *copies)
    slot, reading, written, _ = expect_boot(disk)
    assert (slot, reading.source, reading.damage, written.seq) == (
        case.slot,
        case.source,
        case.damage,
        case.written,
    )
    box = tmp_path / "box"
    box.mkdir()
    for index, blob in enumerate(copies):
        (box / f"bootstate.{index}").write_bytes(blob)
    BootFiles(box).change(lambda state: bs.boot(state)[1])  # what U-Boot does, by the box's writer
    for index in (0, 1):
        assert (box / f"bootstate.{index}").read_bytes() == disk.read_fat(f"bootstate.{index}"), index


def test_b_counts_its_tries_down_across_the_wrap_and_falls_back(disk: Disk, tmp_path: Path) -> None:
    """The old boot.scr wrote ffffffff + 1 as 100000000: a copy neither side reads as newer, so every boot
    read the same ffffffff copy and spent the same try again: a slot B that never boots never fell back."""
    trying = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=bs.SEQ_MASK), "B")
    put(disk, tmp_path, bs.encode(replace(trying, seq=bs.SEQ_MASK - 1)), bs.encode(trying))
    seen = []
    for _ in range(4):
        slot, _, written, _ = expect_boot(disk)
        seen.append((slot, written.b_left, written.seq))
    assert seen == [("B", 2, 0), ("B", 1, 1), ("B", 0, 2), ("A", 0, 3)]


CUTS = int(os.environ.get("MYNABOX_UBOOT_CUTS", "6"))  # 30: ≈ 90 s


def test_power_cuts_while_u_boot_writes_the_state_leave_a_valid_copy(disk: Disk, tmp_path: Path) -> None:
    """qemu killed at random moments around boot.scr's state write (the write itself takes ~35 ms): the
    reader then finds the state before the boot or the one written, never both copies damaged, and the
    next power-on boots on."""
    trying = bs.set_primary(bs.BootState(("A", "B"), 3, 3, seq=7), "B")
    put(disk, tmp_path, bs.encode(trying), bs.encode(replace(trying, seq=6)))
    rng = random.Random(20)
    outcomes: dict[str, int] = {"before": 0, "after": 0, "copy torn": 0}
    for _ in range(CUTS):
        before = bs.read(disk.read_fat("bootstate.0"), disk.read_fat("bootstate.1"))
        _, after_boot = bs.boot(before.state)
        written = bs.successor(before, after_boot)
        cut_uboot(disk, b"mynabox: boot state copy", rng.uniform(0.0, 0.06))
        now = bs.read(disk.read_fat("bootstate.0"), disk.read_fat("bootstate.1"))
        assert now.damage is not bs.Damage.BOTH_BAD
        assert now.state in (before.state, written), (before, now)
        outcomes["after" if now.state == written else "before"] += 1
        outcomes["copy torn"] += now.damage is not bs.Damage.OK
        fsck = subprocess.run(
            ["fsck.vfat", "-n", disk.fat_image(tmp_path)], capture_output=True, text=True, check=False
        )
        assert fsck.returncode == 0, fsck.stdout
    print(f"\nU-Boot cut {CUTS} times during its state write: {outcomes}")
    slot, _ = power_on(disk)
    if slot is None:  # the cuts spent every try: this boot gave them back and reset, the next one boots
        slot, _ = power_on(disk)
    assert slot in ("A", "B")


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MYNABOX_TEST_KERNEL"), reason="set MYNABOX_TEST_KERNEL to a Debian arm64 vmlinuz"
)
def test_a_real_debian_kernel_starts_from_the_chosen_slot(tmp_path: Path) -> None:
    """boot.scr's booti of Debian's own kernel from slot B's /boot, with the slot's root and rauc.slot."""
    kernel = Path(os.environ["MYNABOX_TEST_KERNEL"])
    for slot in ("A", "B"):
        boot = tmp_path / f"slot-{slot}" / "boot"
        boot.mkdir(parents=True)
        (boot / "initrd.img").write_bytes(b"not an initramfs")
    shutil.copyfile(kernel, tmp_path / "slot-B" / "boot" / kernel.name)
    (tmp_path / "slot-B" / "boot" / "vmlinuz").symlink_to(kernel.name)
    make_boot_script(BOOT_CMD, tmp_path / "boot.scr")
    state = bs.set_primary(bs.INITIAL, "B")
    disk = make_disk(
        tmp_path / "disk.img",
        tmp_path,
        {"boot.scr": (tmp_path / "boot.scr").read_bytes(), "bootstate.0": bs.encode(state)},
        {"A": tmp_path / "slot-A", "B": tmp_path / "slot-B"},
        slot_mib=kernel.stat().st_size // (1 << 20) + 16,
    )
    # A marker printed after the whole command line: the console is read up to it (with "Kernel command
    # line:" itself the line was sometimes cut where the read chunk ended).
    console = cut_uboot(disk, b"Memory: ", 0.1, timeout=240)
    line = next(x for x in console.splitlines() if "Kernel command line:" in x)
    assert (
        "root=PARTUUID=6d796e61-03" in line
        and "rauc.slot=B" in line
        and "mynabox.bootstate=copy1-bad" in line
    )
