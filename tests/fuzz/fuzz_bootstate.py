"""Fuzz target: the A/B boot state on the FAT partition (update/bootstate.py), as `update bootloader-backend`
reads and changes it for RAUC (adapters/bootfiles.py), and the kernel command line U-Boot leaves.

Input: a flags byte (bit 0/1: copy 0/1 missing; bits 2-3: the RAUC operation; bit 4: its slot, bit 5: good;
bit 6/7: give copy 0/1 the checksum of its 508 bytes, as anyone who writes the FAT can, or the fuzzer would
never get past it), two u16-prefixed copies (each 512 bytes when whole), then the command line. ``read``
never raises and gives the state of the copy it names (or DEFAULT); ``decode`` raises only BootStateError;
the next state the backend writes (one copy, the other) is a 512-byte copy that reads back as that state,
the newest, whatever numbers the copies held.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from dataclasses import replace

from harness import Reader, main


def setup() -> Callable[[bytes], None]:
    from mynabox.update import bootstate as bs

    def one_input(data: bytes) -> None:
        r = Reader(data)
        flags = r.byte()
        copies = [r.chunk(), r.chunk()]
        for i in (0, 1):
            if flags & (0x40 << i) and len(copies[i]) >= 4:
                copies[i] = zlib.crc32(copies[i][4 : bs.SIZE]).to_bytes(4, "little") + copies[i][4:]
        cmdline = r.rest().decode("utf-8", "replace")
        for blob in copies:
            try:
                bs.decode(blob)
            except bs.BootStateError as err:
                assert len(str(err)) < 200
        given = [None if flags & (1 << i) else copies[i] for i in (0, 1)]
        reading = bs.read(*given)
        if reading.source is None:
            assert reading.state == bs.DEFAULT and reading.damage is bs.Damage.BOTH_BAD
        else:
            blob = given[reading.source]
            assert blob is not None and bs.decode(blob[: bs.SIZE]) == reading.state
        state = reading.state
        slot = "B" if flags & 0x10 else "A"
        op = (flags >> 2) & 3
        bs.get_primary(state)
        bs.get_state(state, slot)
        if op == 0:
            wanted = bs.set_primary(state, slot)
        elif op == 1:
            wanted = bs.set_state(state, slot, bool(flags & 0x20))
        else:
            wanted = bs.boot(state)[1]
        stored = list(given)
        written = bs.successor(reading, wanted)  # into the other copy, as BootFiles.change writes it
        stored[reading.write_to] = bs.encode(written)
        assert len(stored[reading.write_to]) == bs.SIZE
        back = bs.read(*stored)
        # An empty BOOT_ORDER reads as RAUC's default, as U-Boot's boot.scr takes it (one of only the trial
        # word is not empty: it names no slot).
        empty = not written.order and written.trial is None
        assert back.state == (replace(written, order=bs.DEFAULT.order) if empty else written), back
        assert back.damage is bs.Damage.OK or reading.source is None  # both bad: copy 0 written only
        current = bs.booted_slot(cmdline)
        assert current is None or len(current) <= len(cmdline)
        bs.boot_damage(cmdline)

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
