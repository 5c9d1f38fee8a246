"""The power-cut test's own logic (image-build/cut-test.py), on the host: the seeded draw of the cut points,
what the card's boot state says boot.scr must boot (real copies, the reader's rules), where a cut landed,
the instrumented backend, and each cut's verdict on console texts shaped like the emulated box's (boot.scr's
lines, systemd's, the health check's): clean, and every way a cut can go wrong."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from mynabox.update import bootstate as bs

from .scripts import IMAGE_BUILD, fat_card, load


def cut_test() -> ModuleType:
    return load("cut-test")


ct = cut_test()
vmbox = sys.modules["vmbox"]  # imported by cut-test.py: the card helpers

ON_B = bs.BootState(order=("B", "A"), a_left=3, b_left=3, seq=8)  # just made primary by set-primary B


def copies(newest: bs.BootState) -> tuple[bytes, bytes]:
    """Copy 0 holds the state before, copy 1 the newest (as a writer leaves them)."""
    return bs.encode(replace(newest, seq=newest.seq - 1, order=("A",), b_left=0)), bs.encode(newest)


def console(slot: str = "B", copy: str = "1", damage: str = "ok", seq: int = 8, *, ready: bool = True,
            healthy: bool = True, said: bool = False) -> str:  # fmt: skip
    """The console after a power-on, as the box prints it."""
    lines = [
        "U-Boot 2025.01-3 (Oct 10 2025)",
        f"mynabox: boot state copy {copy} ({damage}), seq {seq:x}",
        f"mynabox: wrote bootstate.0: order B A, A 3, B 2, seq {seq + 1:x}",
        f"mynabox: booting slot {slot} from virtio 0:{3 if slot == 'B' else 2}",
        "[   41.2] systemd[1]: Starting mynabox.service - mynabox daemon...",
    ]
    if said:
        lines.append(
            f"[   60.1] mynabox[412]: WARNING update: boot.scr found the boot state damaged at this boot "
            f"({damage}): the other copy was read"
        )
    if ready:
        lines.append("[  OK  ] Started mynabox.service - mynabox daemon.")
    if healthy:
        lines.append(f"[   80.3] mynabox-health[501]: health: slot {slot} is healthy: marked good")
    return "\r\n".join(lines) + "\r\n"


OUTBOX_OK = "outbox ok\n"


def test_a_clean_cut_is_clean() -> None:
    expected = ct.expected_boot(*copies(ON_B))
    assert expected.slot == "B" and expected.damage == "ok"
    assert ct.verdict(console(), expected, 3, 3, OUTBOX_OK) == (True, [])
    assert ct.verdict(console(), expected, 3, 4, OUTBOX_OK) == (True, [])  # a boot may add entries


def test_lost_audit_entries_fail() -> None:
    expected = ct.expected_boot(*copies(ON_B))
    ok, wrong = ct.verdict(console(), expected, 3, 2, OUTBOX_OK)
    assert not ok and wrong == ["audit entries 3 -> 2"]
    ok, wrong = ct.verdict(console(), expected, 3, None, OUTBOX_OK)
    assert not ok and wrong == ["audit chain does not verify"]


def test_a_damaged_outbox_fails() -> None:
    expected = ct.expected_boot(*copies(ON_B))
    for out in ("outbox *** in database main ***\nPage 3 is never used\n", "", "Traceback ...\n"):
        ok, wrong = ct.verdict(console(), expected, 3, 3, out)
        assert not ok and wrong == ["outbox integrity check failed"]


def test_damage_must_be_said() -> None:
    """Copy 1 (the newest) torn by the cut: boot.scr reads copy 0 and boots A; clean only when the daemon
    says the state was damaged."""
    old, new = copies(ON_B)
    expected = ct.expected_boot(old, new[:100])
    assert (expected.slot, expected.damage) == ("A", "copy1-bad")
    text = console("A", copy="0", damage="copy1-bad", seq=7, said=True)
    assert ct.verdict(text, expected, 3, 3, OUTBOX_OK) == (True, [])
    ok, wrong = ct.verdict(console("A", copy="0", damage="copy1-bad", seq=7), expected, 3, 3, OUTBOX_OK)
    assert not ok and wrong == ["damaged boot state not said by the daemon"]


def test_no_ready_fails() -> None:
    expected = ct.expected_boot(*copies(ON_B))
    ok, wrong = ct.verdict(console(ready=False, healthy=False), expected, 3, 3, OUTBOX_OK)
    assert not ok and wrong == ["no READY", "no slot marked good by the health check"]
    ok, wrong = ct.verdict(console(healthy=False), expected, 3, 3, OUTBOX_OK)
    assert not ok and wrong == ["no slot marked good by the health check"]


def test_a_slot_the_card_did_not_name_fails() -> None:
    """The card made B primary (the write landed): booting A is a slot not marked for booting."""
    expected = ct.expected_boot(*copies(ON_B))
    ok, wrong = ct.verdict(console("A"), expected, 3, 3, OUTBOX_OK)
    assert not ok and wrong == ["booted slot A, the card named B"]
    # …and the write had not landed (copy 1 still the old state): booting B is not marked either.
    before = bs.encode(replace(ON_B, order=("A",), b_left=0, seq=7))
    expected = ct.expected_boot(before, bs.encode(replace(ON_B, order=("A",), b_left=0, seq=6)))
    assert expected.slot == "A"
    ok, wrong = ct.verdict(console("B", copy="0", seq=7), expected, 3, 3, OUTBOX_OK)
    assert not ok and wrong == ["booted slot B, the card named A"]


def test_a_damage_boot_scr_did_not_say_fails() -> None:
    """The card held a bad copy, boot.scr said ok (it read something else than the card held): the box
    did not say so, whatever slot it booted."""
    old, _ = copies(ON_B)
    expected = ct.expected_boot(old, b"\0" * bs.SIZE)
    assert (expected.slot, expected.damage) == ("A", "copy1-bad")
    ok, wrong = ct.verdict(console("A", copy="0", seq=7), expected, 3, 3, OUTBOX_OK)
    assert not ok and wrong == [
        "boot.scr read ok, the card held copy1-bad",
        "damaged boot state not said by the daemon",
    ]
    ok, wrong = ct.verdict("U-Boot 2025.01\r\n", expected, 3, 3, OUTBOX_OK)
    assert "boot.scr booted no slot" in wrong and "no boot.scr state line" in wrong


def test_both_copies_bad_and_no_tries_left() -> None:
    expected = ct.expected_boot(b"", None)
    assert (expected.slot, expected.damage) == ("A", "both-bad")  # RAUC's default order A B
    spent = bs.encode(bs.BootState(order=("B", "A"), a_left=0, b_left=0, seq=9))
    expected = ct.expected_boot(spent, None)
    assert (expected.slot, expected.damage) == ("B", "copy1-bad")  # tries given back, B first again


def test_the_draw_repeats_with_its_seed_and_covers_every_window() -> None:
    points = [ct.draw(random.Random(20261207)) for _ in range(2)]
    assert points[0] == points[1]
    rng = random.Random(7)
    drawn = [ct.draw(rng) for _ in range(300)]
    rng = random.Random(7)
    assert drawn[:5] == [ct.draw(rng) for _ in range(5)]
    assert {(p.phase, p.window) for p in drawn} == {
        ("install", "of the install's span"),
        ("switch", "after-mark"),
        ("switch", "in-backend"),
        ("first-boot", "of a boot's span"),
    }
    limits = {"install": 1, "first-boot": 1, "after-mark": 3, "in-backend": 1}
    for p in drawn:
        assert 0 <= p.value <= limits[p.window if p.phase == "switch" else p.phase]
    # Three draws a cut, whatever the phase: the 2nd cut's point does not depend on the 1st's phase.
    rng = random.Random(7)
    rng.choice(ct.PHASES), rng.choice(ct.SWITCH_WINDOWS), rng.random()
    assert ct.draw(rng) == drawn[1]


BACKEND_TEXT = (
    "rauc[300]: installing `https://10.0.2.2:4000/good.raucb` succeeded\r\n"
    "mynabox-cut: backend set-primary B begin 512.34\r\n"
    "mynabox-cut: backend set-primary B end rc=0 514.10\r\n"
)


def test_where_a_cut_landed() -> None:
    # As the console shows the typed command (the shell's echo holds "@@install-end-$((3+0))").
    start = (
        "root@mynabox:/# (/opt/mynabox/venv/bin/mynabox update install https://10.0.2.2:4000/good.raucb"
        " > /run/mynabox-test-install-3.log 2>&1; rc=$?;"
        ' echo "@@install-end-$((3+0)) rc=$rc" > /dev/ttyAMA0)\r\n'
    )
    assert ct.landed(start) == "install-started"
    writing = start + "rauc[300]: writing data to device /dev/vda3\r\n"
    assert ct.landed(writing) == "slot-write"
    adaptive = (
        start + "rauc[300]: Updating /dev/disk/by-partuuid/6d796e61-03 with /run/rauc/mnt/b/rootfs.ext4\r\n"
    )
    assert ct.landed(adaptive) == "slot-write"
    marked = writing + "rauc[300]: Updating slot rootfs.1 status\r\n" + BACKEND_TEXT.splitlines()[0]
    assert ct.landed(marked) == "install-succeeded"
    begun = writing + "\r\n".join(BACKEND_TEXT.splitlines()[:2])
    assert ct.landed(begun) == "set-primary begun"
    assert ct.landed(writing + BACKEND_TEXT) == "set-primary ended"
    assert ct.landed(writing + BACKEND_TEXT + "@@install-end-3 rc=0\r\n") == "install-ended"
    booting = writing + BACKEND_TEXT + "mynabox: booting slot B from virtio 0:3\r\n"
    assert ct.landed(booting) == "new-slot-booting"
    # The target marked bad before its write: a set-state in the backend.
    assert ct.landed(start + "mynabox-cut: backend set-state B begin 3.5\r\n") == "set-state begun"


def test_backend_spans() -> None:
    text = (
        "mynabox-cut: backend set-state B begin 100.00\r\n"
        "mynabox-cut: backend set-state B end rc=0 101.00\r\n"
    )
    assert ct.backend_spans(text + BACKEND_TEXT) == [1.76]
    assert ct.backend_spans(text + BACKEND_TEXT, None) == [1.0, 1.76]
    assert ct.backend_spans(BACKEND_TEXT.splitlines()[1]) == []  # begun, never ended (cut)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_the_instrumented_backend_is_the_image_s_with_two_lines(tmp_path: Path) -> None:
    source = IMAGE_BUILD / "rauc" / "rauc-bootloader-backend"
    made = ct.instrumented_backend(source, tmp_path / "backend")
    original, instrumented = source.read_text().splitlines(), made.read_text().splitlines()
    added = [ln for ln in instrumented if ln not in original]
    assert len(added) == 2 and all("> /dev/ttyAMA0" in ln and "mynabox-cut: backend" in ln for ln in added)
    assert [ln for ln in instrumented if ln in original] == original
    subprocess.run(["sh", "-n", str(made)], check=True)
    # The lines it prints are the ones the test parses.
    line = subprocess.run(
        ["sh", "-c", added[0].strip().replace("/dev/ttyAMA0", "/dev/stdout"), "backend", "set-primary", "B"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert ct.BACKEND_LINE.match(line).group(1, 2, 3) == ("set-primary", "B", "begin")
    broken = tmp_path / "changed"
    broken.write_text(source.read_text().replace('backend "$@"\n    rc=$?', 'backend "$@" ; rc=$?'))
    with pytest.raises(SystemExit):
        ct.instrumented_backend(broken, tmp_path / "out")


def test_the_table_per_phase() -> None:
    switch = {"phase": "switch", "window": "in-backend"}
    rows = [
        {**switch, "ok": True, "cycle_s": 150.0, "landed": "set-primary begun"},
        {**switch, "ok": False, "cycle_s": 170.0, "landed": "set-primary ended"},
        {"phase": "install", "window": "w", "ok": True, "cycle_s": 100.0, "landed": "slot-write"},
    ]
    assert ct.table(rows) == [
        "install / w: 1 cuts, 1 clean, 100 s a cycle; landed: slot-write 1",
        "switch / in-backend: 2 cuts, 1 clean, 160 s a cycle;"
        " landed: set-primary begun 1, set-primary ended 1",
    ]


@pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="needs dosfstools and mtools"
)
def test_the_card_read_while_off(tmp_path: Path) -> None:
    """The copies as the test reads them from the card (mtools on the FAT partition of an MBR image)."""
    image = fat_card(tmp_path)
    assert ct.card_state(image) == ct.expected_boot(None, None)  # no copies: both bad, slot A
    old, new = copies(ON_B)
    vmbox.fat_put(image, "bootstate.0", old, tmp_path)
    vmbox.fat_put(image, "bootstate.1", new, tmp_path)
    got = ct.card_state(image)
    assert (got.slot, got.damage) == ("B", "ok") and "seq 8, copy 1 (ok)" in got.state
    vmbox.fat_put(image, "bootstate.1", new[:100], tmp_path)
    assert (ct.card_state(image).slot, ct.card_state(image).damage) == ("A", "copy1-bad")
