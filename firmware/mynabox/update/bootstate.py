"""The A/B boot state shared with U-Boot's boot.scr: two checksummed copies, the newest valid one wins.

Each copy is 512 bytes in U-Boot's `env export -c -s 0x200` form: CRC32 (little endian) of the 508 bytes
after it, then `name=value` entries each ended by a NUL, sorted by name, then NULs. It holds RAUC's U-Boot
contract (BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT, numbers in hex as U-Boot's setexpr writes them) and BOOT_SEQ,
a 32-bit sequence number. A writer reads both copies, takes the newest valid one and writes the next state
with BOOT_SEQ + 1 into the *other* copy, so a power cut at any byte damages at most the copy being written
and the state before it survives in the other. The rules here are the ones image-build/boot/boot.cmd runs
under U-Boot; tests run both on one table of cases (tests/update/seqcases.py).

BOOT_SEQ counts modulo 2^32 and "newest" is serial number arithmetic (RFC 1982): a copy is newer when its
number is 1 to 2^31 - 1 ahead of the other's, so ffffffff + 1 = 0 is newer than ffffffff, and a copy forged
(or worn) to ffffffff loses to a real 5, 6 ahead of it. Whatever the two numbers, the successor of the one
read is 1 ahead of it and wins the next read: no number makes a write lose for ever (exactly 2^31 apart
is a tie, read as copy 0, as equal numbers are). A BOOT_SEQ is a number only in the one form both writers
write, lowercase hex without leading zeros, at most 8 digits (`setexpr`'s own output); any other spelling
makes its copy damaged, reported as such, on both sides.

The slot on trial (made primary by an install, not yet marked good) rides in BOOT_ORDER as one more word
after the slots, `trial<SLOT>` (`B A trialB`), for the slot's second stage
(image-build/boot/mynabox-boot.cmd), which arms the hardware watchdog early only for a slot on trial: a
board where that goes wrong can then only fail an update, never a working slot. Only the box writes the
word (`set_primary` sets it, `set_state` of that slot, good or bad, clears it); the FAT stub, frozen on
flashed cards, imports and exports only BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT and BOOT_SEQ, copies
BOOT_ORDER verbatim and skips every word of it that is not a slot, so every stub in the field keeps the
word and boots as before. A firmware older than the word skips it too and drops it at its next write:
harmless, only the early watchdog is lost for that trial.

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from enum import Enum

from mynabox.record import record

SIZE = 512
SLOTS = ("A", "B")
TRIES = 3  # boot attempts a slot gets when made primary or marked good (RAUC's default)
SEQ_MASK = 0xFFFFFFFF
SEQ_HALF = 0x80000000  # serial number arithmetic's window: newer means 1 to SEQ_HALF - 1 ahead
_NAMES = ("BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT", "BOOT_SEQ")
TRIAL = "trial"  # BOOT_ORDER's word for the slot on trial: TRIAL + slot, after the slots
_TRIAL_WORDS = frozenset(TRIAL + s for s in SLOTS)
_MAX_DIGITS = 8


class BootStateError(Exception):
    """A copy is damaged (size, checksum, sequence number) or an operation names an unknown slot."""


class Damage(Enum):
    """What the reader found; anything but OK is logged and published by the box (and U-Boot puts it on
    the kernel command line as mynabox.bootstate=…)."""

    OK = "ok"
    COPY0_BAD = "copy0-bad"
    COPY1_BAD = "copy1-bad"
    BOTH_BAD = "both-bad"


@record
class BootState:
    order: tuple[str, ...]
    a_left: int
    b_left: int
    seq: int
    trial: str | None = None  # the slot on trial: made primary (set_primary), not yet marked good or bad

    def left(self, slot: str) -> int:
        _check_slot(slot)
        return self.a_left if slot == "A" else self.b_left

    def with_left(self, slot: str, tries: int) -> BootState:
        _check_slot(slot)
        return replace(self, a_left=tries) if slot == "A" else replace(self, b_left=tries)


DEFAULT = BootState(order=("A", "B"), a_left=TRIES, b_left=TRIES, seq=0)  # RAUC's, for both copies bad
# What a new card holds in both copies: slot B is empty, so it is not in the order and has no tries.
INITIAL = BootState(order=("A",), a_left=TRIES, b_left=0, seq=1)


@record
class Reading:
    state: BootState
    source: int | None  # the copy read, None when both are damaged (DEFAULT then)
    damage: Damage

    @property
    def write_to(self) -> int:
        """The copy the next state goes to: never the one just read."""
        return 1 if self.source == 0 else 0


def encode(state: BootState) -> bytes:
    fields = {
        "BOOT_ORDER": " ".join((*state.order, TRIAL + state.trial) if state.trial else state.order),
        "BOOT_A_LEFT": f"{state.a_left:x}",
        "BOOT_B_LEFT": f"{state.b_left:x}",
        "BOOT_SEQ": f"{state.seq & SEQ_MASK:x}",
    }
    body = b"".join(f"{k}={v}".encode("ascii") + b"\0" for k, v in sorted(fields.items()))
    if len(body) >= SIZE - 4:
        raise BootStateError("boot state does not fit its copy")
    data = body + b"\0" * (SIZE - 4 - len(body))
    return zlib.crc32(data).to_bytes(4, "little") + data


def decode(blob: bytes) -> BootState:
    """A copy as U-Boot's `env import -c` and boot.scr take it: whole, checksum right, BOOT_SEQ present and
    spelt as its writers spell it (`_seq`).

    The other values are read as leniently as U-Boot does (a missing field gets RAUC's default, an
    unreadable count is 0 tries, an unknown slot name is skipped): a copy whose checksum holds was written by
    one of our two writers, and both sides must pick the same copy. The slot on trial is the first word
    `trialA` or `trialB` of BOOT_ORDER; it is not a slot of the order (an order of only that word names no
    slot, as an order of only unknown words)."""
    if len(blob) != SIZE:
        raise BootStateError(f"boot state copy is {len(blob)} bytes, not {SIZE}")
    data = blob[4:]
    if zlib.crc32(data) != int.from_bytes(blob[:4], "little"):
        raise BootStateError("boot state copy fails its checksum")
    fields: dict[str, str] = {}
    for entry in data.split(b"\0\0", 1)[0].split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name.decode("ascii", "replace") in _NAMES:
            fields[name.decode("ascii")] = value.decode("ascii", "replace")
    seq = _seq(fields.get("BOOT_SEQ", ""))
    if seq is None:
        raise BootStateError("boot state copy has no BOOT_SEQ in the form its writers write")
    # A slot named again changes nothing (U-Boot boots the first with tries left) and is dropped, so the
    # state written next fits its copy however long the order read was.
    named = fields.get("BOOT_ORDER", "")
    order = tuple(dict.fromkeys(s for s in named.split() if s in SLOTS)) or (
        DEFAULT.order if not named.strip() else ()
    )
    trial = next((w.removeprefix(TRIAL) for w in named.split() if w in _TRIAL_WORDS), None)
    return BootState(
        order=order,
        a_left=_left(fields.get("BOOT_A_LEFT")),
        b_left=_left(fields.get("BOOT_B_LEFT")),
        seq=seq,
        trial=trial,
    )


def newer(seq: int, than: int) -> bool:
    """`seq` is newer than `than`: 1 to 2^31 - 1 ahead of it, modulo 2^32 (boot.scr: setexpr, then itest)."""
    return 0 < (seq - than) & SEQ_MASK < SEQ_HALF


def read(copy0: bytes | None, copy1: bytes | None) -> Reading:
    """The newest valid copy (`newer`; copy 0 on a tie); DEFAULT when both are damaged or missing. A copy is
    its first SIZE bytes, as boot.scr loads it: a shorter file is damaged, bytes past SIZE are not read."""
    states: list[BootState | None] = []
    for blob in (copy0, copy1):
        try:
            states.append(None if blob is None else decode(blob[:SIZE]))
        except BootStateError:
            states.append(None)
    s0, s1 = states
    if s0 is not None and s1 is not None:
        return Reading(s1, 1, Damage.OK) if newer(s1.seq, s0.seq) else Reading(s0, 0, Damage.OK)
    if s0 is not None:
        return Reading(s0, 0, Damage.COPY1_BAD)
    if s1 is not None:
        return Reading(s1, 1, Damage.COPY0_BAD)
    return Reading(DEFAULT, None, Damage.BOTH_BAD)


def successor(reading: Reading, state: BootState) -> BootState:
    """`state` as the next write after `reading`, into `reading.write_to`: one more than the sequence number
    read, modulo 2^32, so always the newer of the two copies."""
    return replace(state, seq=(reading.state.seq + 1) & SEQ_MASK)


def boot(state: BootState) -> tuple[str | None, BootState]:
    """What boot.scr does with a state: the first slot in BOOT_ORDER with tries left spends one; with none
    left every slot gets TRIES again and U-Boot resets. Sequence number unchanged (see `successor`), the slot
    on trial kept (the stub writes BOOT_ORDER back as it read it)."""
    for slot in state.order:
        if state.left(slot) > 0:
            return slot, state.with_left(slot, state.left(slot) - 1)
    return None, replace(state, a_left=TRIES, b_left=TRIES)


# RAUC's bootloader interface, with the semantics of RAUC's own U-Boot backend (src/bootloaders/uboot.c).


def get_primary(state: BootState) -> str | None:
    return next((s for s in state.order if state.left(s) > 0), None)


def get_state(state: BootState, slot: str) -> bool:
    return slot in state.order and state.left(slot) > 0


def set_primary(state: BootState, slot: str) -> BootState:
    """`slot` first with TRIES, and on trial until it is marked good or bad."""
    _check_slot(slot)
    order = (slot, *(s for s in state.order if s != slot))
    return replace(state.with_left(slot, TRIES), order=order, trial=slot)


def set_state(state: BootState, slot: str, good: bool) -> BootState:
    """Good: TRIES again; bad: out of the order. Either way `slot` is no longer on trial."""
    _check_slot(slot)
    if state.trial == slot:
        state = replace(state, trial=None)
    if good:
        return state.with_left(slot, TRIES)
    return replace(state.with_left(slot, 0), order=tuple(s for s in state.order if s != slot))


def booted_slot(cmdline: str) -> str | None:
    """The slot U-Boot booted, from `rauc.slot=` on the kernel command line."""
    return _param(cmdline, "rauc.slot")


def boot_damage(cmdline: str) -> Damage | None:
    """What boot.scr found damaged in the boot state at this boot (None: booted without boot.scr)."""
    value = _param(cmdline, "mynabox.bootstate")
    return next((d for d in Damage if d.value == value), None)


def _param(cmdline: str, name: str) -> str | None:
    found = None
    for word in cmdline.split():
        key, sep, value = word.partition("=")
        if sep and key == name:
            found = value  # the last one wins, as for the kernel
    return found


def _check_slot(slot: str) -> None:
    if slot not in SLOTS:
        raise BootStateError(f"unknown slot {slot[:8]!r}: expected A or B")


def _hex(text: str) -> int | None:
    text = text.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    if not text or len(text) > _MAX_DIGITS or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return int(text, 16)


def _seq(text: str) -> int | None:
    """BOOT_SEQ as its writers write it (Python's f"{seq:x}", U-Boot's setexpr): boot.scr takes a copy only
    when `setexpr` of it masked to 32 bits gives back the same text."""
    if not 0 < len(text) <= _MAX_DIGITS or any(c not in "0123456789abcdef" for c in text):
        return None
    value = int(text, 16)
    return value if f"{value:x}" == text else None


def _left(text: str | None) -> int:
    if text is None or not text.strip():
        return TRIES  # U-Boot's default for a missing (or empty, which env import drops) count
    value = _hex(text)
    return 0 if value is None else value
