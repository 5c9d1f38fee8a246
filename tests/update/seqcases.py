"""BOOT_SEQ at the top of its range and in forms no writer writes: one table of cases for both sides, the
box's reader and writer (mynabox.update.bootstate, tests/update/test_bootstate.py) and boot.scr under U-Boot
(tests/update/test_uboot_script.py). Each case is two copies and what must come of them: the copy read, the
damage said, and the BOOT_SEQ of the state written into the other copy.

Each copy holds its own state, so the slot booted shows which copy won: copy 0 boots A, copy 1 boots B.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from mynabox.update import bootstate as bs

# Copy 0's state boots A, copy 1's boots B (B primary with its tries).
STATE0 = bs.BootState(("A", "B"), 3, 3, seq=0)
STATE1 = bs.set_primary(STATE0, "B")
STATES = (STATE0, STATE1)


def sealed(state: bs.BootState, seq_text: str) -> bytes:
    """A copy as `env export -c` writes it, but with BOOT_SEQ spelt `seq_text` (checksum right)."""
    fields = {
        "BOOT_ORDER": " ".join((*state.order, f"trial{state.trial}") if state.trial else state.order),
        "BOOT_A_LEFT": f"{state.a_left:x}",
        "BOOT_B_LEFT": f"{state.b_left:x}",
        "BOOT_SEQ": seq_text,
    }
    body = b"".join(f"{k}={v}".encode("ascii") + b"\0" for k, v in sorted(fields.items()))
    data = body + b"\0" * (bs.SIZE - 4 - len(body))
    return zlib.crc32(data).to_bytes(4, "little") + data


@dataclass(frozen=True)
class SeqCase:
    name: str
    seq0: str  # BOOT_SEQ of copy 0, as spelt in the copy
    seq1: str
    source: int  # the copy read
    damage: bs.Damage
    written: int  # BOOT_SEQ of the state written into the other copy

    def copies(self) -> tuple[bytes, bytes]:
        return sealed(STATE0, self.seq0), sealed(STATE1, self.seq1)

    @property
    def slot(self) -> str:
        return "AB"[self.source]

    def read_state(self) -> bs.BootState:
        """The state read (before U-Boot spends a try): the source copy's, with its sequence number."""
        return replace(STATES[self.source], seq=int((self.seq0, self.seq1)[self.source], 16))


OK, COPY0_BAD, COPY1_BAD = bs.Damage.OK, bs.Damage.COPY0_BAD, bs.Damage.COPY1_BAD
CASES = (
    # A copy forged (or worn) to the last number loses to a real one: 5 is 6 ahead of ffffffff mod 2^32.
    SeqCase("forged-ffffffff-in-copy0", "ffffffff", "5", 1, OK, 6),
    SeqCase("forged-ffffffff-in-copy1", "5", "ffffffff", 0, OK, 6),
    # The increment wraps: ffffffff + 1 is 0, and 0 is the newer.
    SeqCase("wrap-ffffffff-to-0", "fffffffe", "ffffffff", 1, OK, 0),
    SeqCase("0-after-ffffffff-is-newer", "0", "ffffffff", 0, OK, 1),
    SeqCase("both-ffffffff", "ffffffff", "ffffffff", 0, OK, 0),
    SeqCase("both-near-the-top", "fffffff0", "fffffff1", 1, OK, 0xFFFFFFF2),
    # Half the range apart: the window's edge. Less than 2^31 ahead is newer; exactly 2^31 is a tie (copy 0).
    SeqCase("2^31-1-ahead-is-newer", "1", "80000000", 1, OK, 0x80000001),
    SeqCase("2^31-apart-reads-copy0", "0", "80000000", 0, OK, 1),
    SeqCase("2^31-apart-reads-copy0-too", "80000000", "0", 0, OK, 0x80000001),
    SeqCase("more-than-2^31-ahead-is-older", "0", "80000001", 0, OK, 1),
    # What the old boot.scr wrote after ffffffff (setexpr is 64-bit): no sequence number any more.
    SeqCase("old-boot-scr-wrote-100000000", "100000000", "ffffffff", 1, COPY0_BAD, 0),
    # Only the form both writers write (lowercase hex, no leading zero, at most 8 digits) is a number.
    SeqCase("0x-prefix-is-damage", "5", "0x6", 0, COPY1_BAD, 6),
    SeqCase("leading-zero-is-damage", "00000006", "5", 1, COPY0_BAD, 6),
    SeqCase("uppercase-is-damage", "5", "A", 0, COPY1_BAD, 6),
    SeqCase("not-hex-is-damage", "5", "6z", 0, COPY1_BAD, 6),
    SeqCase("pointer-is-damage", "*40200000", "5", 1, COPY0_BAD, 6),
)
