"""The box's writer of the boot state (adapters/bootfiles.py): the other copy, in place, fsynced; power cuts
at random points on the LazyFS-style file system always leave a valid copy holding a state the writer
reached, and nothing it reported done is lost."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs
from support.lazyfs import LazyMount, fuse_available

needs_fuse = pytest.mark.skipif(fuse_available() is not None, reason=f"FUSE: {fuse_available()}")
CUTS = int(os.environ.get("MYNABOX_BOOTSTATE_CUTS", "30"))

# What RAUC does to the state over updates: install into B, B good, install into A, A bad, A again, ...
OPS = [("primary", "B"), ("good", "B"), ("primary", "A"), ("bad", "A"), ("primary", "A"), ("good", "A")]


def apply(state: bs.BootState, op: tuple[str, str]) -> bs.BootState:
    kind, slot = op
    return bs.set_primary(state, slot) if kind == "primary" else bs.set_state(state, slot, kind == "good")


def test_change_writes_the_other_copy_only(tmp_path: Path) -> None:
    files = BootFiles(tmp_path)
    files.write(0, bs.INITIAL)
    files.write(1, replace(bs.INITIAL, seq=0))
    before0 = files.path(0).read_bytes()
    state = files.change(lambda s: bs.set_primary(s, "B"))
    assert files.path(0).read_bytes() == before0
    assert bs.decode(files.path(1).read_bytes()) == state
    assert (state.order, state.b_left, state.seq, state.trial) == (("B", "A"), 3, 2, "B")
    good = files.change(lambda s: bs.set_state(s, "B", good=True))  # already 3 tries, but no longer on trial
    assert (good.b_left, good.seq, good.trial) == (3, 3, None)
    assert bs.decode(files.path(0).read_bytes()) == good
    before1 = files.path(1).read_bytes()
    files.change(lambda s: bs.set_state(s, "B", good=True))  # nothing to write
    assert files.read() == bs.Reading(good, 0, bs.Damage.OK) and files.path(1).read_bytes() == before1
    assert files.change(lambda s: bs.set_state(s, "A", good=False)).seq == 4
    assert bs.decode(files.path(1).read_bytes()).order == ("B",)


@pytest.mark.parametrize("source", [0, 1])
def test_a_change_after_the_last_sequence_number_is_still_read(tmp_path: Path, source: int) -> None:
    """Found by fuzzing (tests/fuzz/fuzz_bootstate.py): a copy at BOOT_SEQ ffffffff (forged: a few writes per
    boot never get there) made every later write 0, older than it, so no change was ever read again."""
    files = BootFiles(tmp_path)
    files.write(source, replace(bs.INITIAL, seq=bs.SEQ_MASK))
    files.write(1 - source, replace(bs.INITIAL, seq=5))
    state = files.change(lambda s: bs.set_primary(s, "B"))
    assert files.read().state == state and state.order == ("B", "A")
    assert files.change(lambda s: bs.set_state(s, "B", good=False)).order == ("A",)
    assert files.read().state.order == ("A",) and files.read().damage is bs.Damage.OK


def test_a_damaged_copy_is_rewritten_even_without_a_change(tmp_path: Path) -> None:
    files = BootFiles(tmp_path)
    files.write(0, bs.INITIAL)
    files.path(1).write_bytes(b"torn" * 300)  # a bad checksum, and too long: the write cuts it to size
    assert files.read().damage is bs.Damage.COPY1_BAD
    files.change(lambda s: s)
    assert files.read().damage is bs.Damage.OK
    assert files.path(1).stat().st_size == bs.SIZE


def test_a_copy_is_its_first_512_bytes_as_u_boot_loads_it(tmp_path: Path) -> None:
    files = BootFiles(tmp_path)
    files.path(0).write_bytes(bs.encode(bs.INITIAL) + b"trailing")
    files.path(1).write_bytes(bs.encode(replace(bs.INITIAL, seq=9))[:511])
    assert files.read() == bs.Reading(bs.INITIAL, 0, bs.Damage.COPY1_BAD)


def test_both_missing_start_from_the_default_in_copy_0(tmp_path: Path) -> None:
    files = BootFiles(tmp_path)
    state = files.change(lambda s: bs.set_primary(s, "A"))
    assert files.read() == bs.Reading(state, 0, bs.Damage.COPY1_BAD)
    assert state == replace(bs.DEFAULT, seq=1, trial="A")


_WRITER = """
import sys, time
from pathlib import Path
from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs
sys.path.insert(0, {tests!r})
from update.test_bootfiles import OPS, apply
stop_op, stop_at = {stop_op!r}, {stop_at!r}
op = 0
def checkpoint(name):
    if op >= stop_op and name == stop_at:  # an op that changes nothing writes nothing: the next one
        print("stopped", flush=True)
        time.sleep(60)  # the test cuts the power here
files = BootFiles(Path({mnt!r}), checkpoint)
while True:
    state = files.change(lambda s: apply(s, OPS[op % len(OPS)]))
    print(state.seq, flush=True)
    op += 1
"""

CHECKPOINTS = ("opened", "written", "synced")


def _states_reachable(start: bs.BootState, steps: int) -> dict[int, bs.BootState]:
    """seq -> the state the writer stores with that sequence number."""
    out = {start.seq: start}
    state = start
    for i in range(steps):
        wanted = apply(state, OPS[i % len(OPS)])
        if wanted != state:  # BootFiles.change writes nothing when nothing changes
            state = replace(wanted, seq=state.seq + 1)
            out[state.seq] = state
    return out


@needs_fuse
def test_power_cuts_at_each_step_of_each_write_leave_a_valid_reached_state(tmp_path: Path) -> None:
    """A cut at every checkpoint of a write (file opened, bytes written but not fsynced, fsynced) of several
    changes in a row, dropping or tearing what was not fsynced: the copy read before stays valid, the
    reader finds the state before the change or after it, and every change reported done survives."""
    backing = tmp_path / "fat"
    backing.mkdir()
    start = BootFiles(backing)
    start.write(0, bs.INITIAL)
    start.write(1, replace(bs.INITIAL, seq=0))
    tests_dir = str(Path(__file__).resolve().parents[1])
    points = [(op, at, mode) for op in range(5) for at in CHECKPOINTS for mode in ("drop", "torn")]
    random.Random(20).shuffle(points)
    in_flight = 0
    for cut, (stop_op, stop_at, mode) in enumerate(points[:CUTS]):
        before = BootFiles(backing).read()
        mnt = tmp_path / f"mnt{cut}"
        with LazyMount(backing, mnt) as mount:
            code = _WRITER.format(tests=tests_dir, mnt=str(mnt), stop_op=stop_op, stop_at=stop_at)
            writer = subprocess.Popen(
                [sys.executable, "-c", code],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, *sys.path])},
            )
            assert writer.stdout is not None
            done = []
            while (line := writer.stdout.readline().strip()) != b"stopped":
                assert line and len(done) < 50, "the writer died or never reached its stop"
                done.append(int(line))
            stats = mount.power_cut(mode, seed=cut)
            writer.kill()
            writer.wait(timeout=10)
        in_flight += stats["dropped_writes"] > 0
        after = BootFiles(backing).read()
        reachable = _states_reachable(before.state, 100)
        assert after.damage is not bs.Damage.BOTH_BAD, (cut, stats)
        assert reachable.get(after.state.seq) == after.state, (cut, after)
        assert after.state.seq >= max(done, default=before.state.seq), (cut, done, after)
        if stop_at == "synced":
            assert after.state.seq == max(done, default=before.state.seq) + 1  # fsynced before the cut
    print(f"\n{min(CUTS, len(points))} cuts, {in_flight} with an unsynced write in flight")
