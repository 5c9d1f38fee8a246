"""The boot state's codec, reader and RAUC operations, and the power-cut argument byte by byte."""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mynabox.update import bootstate as bs

from .seqcases import CASES, SeqCase

GOOD = bs.BootState(("A", "B"), 3, 3, seq=0x10)


def test_encode_is_u_boots_env_export_form() -> None:
    blob = bs.encode(GOOD)
    assert len(blob) == bs.SIZE
    assert blob[4:].startswith(b"BOOT_A_LEFT=3\0BOOT_B_LEFT=3\0BOOT_ORDER=A B\0BOOT_SEQ=10\0\0")
    assert int.from_bytes(blob[:4], "little") == zlib.crc32(blob[4:])
    assert bs.decode(blob) == GOOD


@given(
    order=st.lists(st.sampled_from(bs.SLOTS), unique=True, max_size=2),
    a=st.integers(0, 3),
    b=st.integers(0, 3),
    seq=st.integers(0, bs.SEQ_MASK),
    trial=st.sampled_from((None, *bs.SLOTS)),
)
def test_round_trip(order: list[str], a: int, b: int, seq: int, trial: str | None) -> None:
    state = bs.BootState(tuple(order) or ("A", "B"), a, b, seq, trial)
    assert bs.decode(bs.encode(state)) == state


def test_the_slot_on_trial_is_a_word_after_the_slots_of_boot_order() -> None:
    """The word the slot's second stage looks for (`trialB`); the stub skips it as a word that is no slot."""
    state = bs.set_primary(GOOD, "B")
    assert state == bs.BootState(("B", "A"), 3, 3, seq=0x10, trial="B")
    assert bs.encode(state)[4:].startswith(
        b"BOOT_A_LEFT=3\0BOOT_B_LEFT=3\0BOOT_ORDER=B A trialB\0BOOT_SEQ=10\0\0"
    )
    assert bs.decode(bs.encode(state)) == state
    assert b"trial" not in bs.encode(GOOD)  # no slot on trial: the copy as before the word


def test_the_trial_word_is_read_as_u_boot_skips_it() -> None:
    """A copy without the word (every copy before it) has no slot on trial; the first trialA/trialB counts,
    wherever it stands; any other word is skipped as before; an order of only the word names no slot, as an
    order of only unknown words (U-Boot then boots none and resets)."""
    old = bs.decode(_sealed(b"BOOT_A_LEFT=3\0BOOT_B_LEFT=3\0BOOT_ORDER=B A\0BOOT_SEQ=5\0\0"))
    assert old == bs.BootState(("B", "A"), 3, 3, 5) and old.trial is None

    def read(order: bytes) -> tuple[tuple[str, ...], str | None]:
        state = bs.decode(_sealed(b"BOOT_ORDER=" + order + b"\0BOOT_SEQ=5\0\0"))
        return state.order, state.trial

    assert read(b"B A trialB") == (("B", "A"), "B")
    assert read(b"trialA A B") == (("A", "B"), "A")
    assert read(b"B trialC trial triala TrialB trialAB trialB trialA A") == (("B", "A"), "B")
    assert read(b"C B") == (("B",), None)
    assert read(b"trialB") == ((), "B")
    assert read(b"C") == ((), None)
    assert bs.boot(bs.decode(_sealed(b"BOOT_ORDER=trialB\0BOOT_SEQ=5\0\0")))[0] is None


@pytest.mark.parametrize(
    "blob",
    [b"", bytes(bs.SIZE), bs.encode(GOOD)[:-1], bs.encode(GOOD) + b"\0", b"\xff" * bs.SIZE],
    ids=["empty", "zeroed", "short", "long", "erased"],
)
def test_damaged_copies_are_refused(blob: bytes) -> None:
    with pytest.raises(bs.BootStateError):
        bs.decode(blob)


def _sealed(body: bytes) -> bytes:
    data = body + b"\0" * (bs.SIZE - 4 - len(body))
    return zlib.crc32(data).to_bytes(4, "little") + data


def test_a_copy_without_a_sequence_number_is_damaged() -> None:
    with pytest.raises(bs.BootStateError):
        bs.decode(_sealed(b"BOOT_ORDER=B A\0\0"))
    with pytest.raises(bs.BootStateError):
        bs.decode(_sealed(b"BOOT_SEQ=nothex\0\0"))


def test_values_are_read_as_u_boot_reads_them() -> None:
    # Missing fields take RAUC's defaults, unknown slots and names are skipped, an unreadable count is 0.
    assert bs.decode(_sealed(b"BOOT_SEQ=5\0\0")) == replace(bs.DEFAULT, seq=5)
    state = bs.decode(_sealed(b"BOOT_A_LEFT=zz\0BOOT_ORDER=C B\0BOOT_SEQ=5\0X=1\0\0"))
    assert (state.order, state.a_left, state.b_left) == (("B",), 0, 3)


def test_newest_valid_copy_wins_and_the_next_write_goes_to_the_other() -> None:
    older, newer = bs.encode(replace(GOOD, seq=4)), bs.encode(replace(GOOD, seq=5))
    assert (bs.read(older, newer).source, bs.read(older, newer).write_to) == (1, 0)
    assert (bs.read(newer, older).source, bs.read(newer, older).write_to) == (0, 1)
    assert bs.read(newer, newer).source == 0  # a tie reads copy 0
    assert bs.read(None, None) == bs.Reading(bs.DEFAULT, None, bs.Damage.BOTH_BAD)
    assert bs.read(None, None).write_to == 0
    assert bs.read(older, b"junk").damage is bs.Damage.COPY1_BAD
    assert bs.read(None, newer).damage is bs.Damage.COPY0_BAD


@pytest.mark.parametrize("target", [0, 1])
def test_a_write_torn_at_any_byte_leaves_the_old_or_the_new_state(target: int) -> None:
    """A power cut during a write leaves the copy being written as a mix of new bytes up to the cut and
    whatever was there (old bytes, zeros, erased flash) after it, or the file cut short: the reader then
    finds the state before the write or the one written, never anything else and never nothing."""
    copies = [bs.encode(replace(GOOD, seq=8)), bs.encode(replace(GOOD, seq=7))]
    if target == 0:
        copies.reverse()
    reading = bs.read(*copies)
    assert reading.write_to == target
    old_state = reading.state
    new_state = bs.successor(reading, bs.set_primary(old_state, "B"))
    new = bs.encode(new_state)
    old_target = copies[reading.write_to]
    for cut in range(bs.SIZE + 1):
        for rest in (old_target[cut:], bytes(bs.SIZE - cut), b"\xff" * (bs.SIZE - cut), b""):
            torn = list(copies)
            torn[reading.write_to] = new[:cut] + rest
            got = bs.read(*torn)
            assert got.state in (old_state, new_state), cut
            assert got.damage is not bs.Damage.BOTH_BAD
            if got.state == new_state:
                assert torn[reading.write_to] == new


def test_a_slot_named_again_in_the_order_changes_nothing_and_is_not_kept() -> None:
    """Found by fuzzing: an order naming a slot 240 times (checksum right) was kept whole, and the next state
    encoded to 536 bytes, a copy boot.scr and the box read as damaged. U-Boot boots the first slot with tries
    left, so a repeat changes nothing: the reader keeps each slot's first place only."""
    forged = _sealed(b"BOOT_ORDER=" + b" ".join([b"B"] * 240) + b" A B\0BOOT_SEQ=5\0\0")
    reading = bs.read(forged, None)
    assert reading.state.order == ("B", "A")
    new = bs.encode(bs.successor(reading, bs.set_primary(reading.state, "A")))
    assert len(new) == bs.SIZE and bs.read(forged, new).state.order == ("A", "B")


@pytest.mark.parametrize("source", [0, 1])
def test_past_the_last_sequence_number_one_write_of_0_into_the_other_copy_is_torn_safely(source: int) -> None:
    """From BOOT_SEQ ffffffff the next state is 0, one write into the other copy as at any other number (this
    replaced a second write over the copy read, as 1 then 0, that only the box's writer did): a cut at any
    byte of it leaves the old state or the new one."""
    copies = [bs.encode(replace(GOOD, seq=bs.SEQ_MASK - 1)), bs.encode(replace(GOOD, seq=bs.SEQ_MASK - 1))]
    copies[source] = bs.encode(replace(GOOD, seq=bs.SEQ_MASK))
    reading = bs.read(*copies)
    assert (reading.source, reading.write_to) == (source, 1 - source)
    new_state = bs.successor(reading, bs.set_primary(reading.state, "B"))
    assert new_state.seq == 0
    new = bs.encode(new_state)
    for cut in range(bs.SIZE + 1):
        for rest in (copies[1 - source][cut:], bytes(bs.SIZE - cut), b""):
            torn = list(copies)
            torn[1 - source] = new[:cut] + rest
            assert bs.read(*torn).state in (reading.state, new_state), cut
    copies[1 - source] = new
    assert bs.read(*copies) == bs.Reading(new_state, 1 - source, bs.Damage.OK)


def test_rauc_operations_follow_raucs_u_boot_backend() -> None:
    trying = bs.set_primary(replace(GOOD, b_left=0, order=("A",)), "B")
    assert (trying.order, trying.b_left) == (("B", "A"), 3)
    assert bs.get_primary(trying) == "B"
    spent = trying.with_left("B", 0)
    assert bs.get_primary(spent) == "A"  # B's tries are spent: the bootloader falls back
    assert not bs.get_state(spent, "B")
    marked_bad = bs.set_state(trying, "B", good=False)
    assert (marked_bad.order, marked_bad.b_left) == (("A",), 0)
    assert bs.get_state(bs.set_state(spent, "B", good=True), "B")
    assert bs.get_primary(bs.BootState(("A",), 0, 3, 1)) is None
    with pytest.raises(bs.BootStateError):
        bs.set_primary(GOOD, "C")


def test_a_slot_is_on_trial_from_set_primary_until_it_is_marked_good_or_bad() -> None:
    trying = bs.set_primary(replace(GOOD, b_left=0, order=("A",)), "B")
    assert trying.trial == "B"
    assert bs.set_state(trying, "B", good=True) == replace(trying, trial=None)
    assert bs.set_state(trying, "B", good=False) == bs.BootState(("A",), 3, 0, 0x10)
    # The other slot marked good (RAUC marks the booted slot good at every boot) or bad: B stays on trial.
    assert bs.set_state(trying, "A", good=True).trial == "B"
    assert bs.set_state(trying, "A", good=False) == bs.BootState(("B",), 0, 3, 0x10, trial="B")
    # Booting keeps it, tries spent or not; made primary again, the other slot is on trial instead.
    assert bs.boot(trying) == ("B", replace(trying, b_left=2))
    assert bs.boot(trying.with_left("B", 0).with_left("A", 0))[1].trial == "B"
    assert bs.set_primary(trying, "A").trial == "A"
    assert bs.DEFAULT.trial is None and bs.INITIAL.trial is None


def test_boot_spends_a_try_and_resets_when_none_is_left() -> None:
    assert bs.boot(GOOD) == ("A", GOOD.with_left("A", 2))
    assert bs.boot(bs.BootState(("B", "A"), 3, 0, 1)) == ("A", bs.BootState(("B", "A"), 2, 0, 1))
    assert bs.boot(bs.BootState(("A",), 0, 0, 1)) == (None, bs.BootState(("A",), 3, 3, 1))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sequence_numbers_at_the_top_and_in_foreign_forms(case: SeqCase) -> None:
    """The table boot.scr runs under U-Boot too (test_uboot_script.py): the copy read, the damage said, the
    number written next; and what is written is then read, the newest."""
    copies = case.copies()
    reading = bs.read(*copies)
    assert (reading.source, reading.damage, reading.state) == (case.source, case.damage, case.read_state())
    after = bs.successor(reading, bs.boot(reading.state)[1])
    assert after.seq == case.written
    stored = list(copies)
    stored[reading.write_to] = bs.encode(after)
    assert bs.read(*stored) == bs.Reading(after, reading.write_to, bs.Damage.OK)


@given(seq=st.integers(0, bs.SEQ_MASK), other=st.integers(0, bs.SEQ_MASK), order=st.booleans())
def test_the_state_written_is_always_the_one_read_next(seq: int, other: int, order: bool) -> None:
    """Whatever two valid copies hold, the next state written (into the other copy) wins the next read:
    no number, however forged, makes a write lose for ever."""
    copies = [bs.encode(replace(GOOD, seq=seq)), bs.encode(replace(GOOD, seq=other, order=("B", "A")))]
    if order:
        copies.reverse()
    for _ in range(3):
        reading = bs.read(*copies)
        after = bs.successor(reading, bs.set_primary(reading.state, "AB"[reading.state.seq % 2]))
        copies[reading.write_to] = bs.encode(after)
        assert bs.read(*copies) == bs.Reading(after, reading.write_to, bs.Damage.OK)
