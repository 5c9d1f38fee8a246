"""The signed per-device sequence comes from the outbox: increasing across acks, restarts and kill -9."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.outbox import DuplicateMessageError, Outbox
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opener, Sealed, Sealer

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DEVICE = "amb-seq-01"
TOPIC = f"mynabox/{DEVICE}/summary"


def _key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x5EC_0000 + n, ec.SECP256R1())


SEALER = Sealer(DEVICE, _key(1), _key(2).public_key())
OPENER = Opener(
    _key(2),
    {DEVICE: _key(1).public_key()},
    max_age=timedelta(days=7),
    max_skew=timedelta(minutes=5),
    max_size=1 << 20,
)


def _put(outbox: Outbox, n: int = 0) -> Sealed:
    def seal(seq: int) -> Sealed:
        return SEALER.seal(Kind.SUMMARY, {"n": n}, now=T0, clock_synced=False, seq=seq)

    return outbox.put_sealed(TOPIC, seal, now=T0)


def test_numbers_grow_across_acks_and_a_restart_and_are_the_signed_ones(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        sealed = [_put(outbox, n) for n in range(3)]
        assert [s.seq for s in sealed] == [1, 2, 3]
        assert [i.seq for i in outbox.next_batch(10)] == [1, 2, 3]  # the send order is the number order
        for s in sealed:
            assert outbox.ack(s.message_id)
        assert outbox.depth() == 0  # nothing left that a max(seq) could start from
    with Outbox(path) as outbox:  # the box restarted
        after = _put(outbox)
        assert after.seq == 4
        (item,) = outbox.next_batch(10)
        assert OPENER.open(item.payload, now=T0).seq == 4


def test_a_seal_that_fails_stores_nothing_and_uses_no_number(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        first = _put(outbox)

        def broken(seq: int) -> Sealed:
            raise ValueError("cannot seal")

        with pytest.raises(ValueError):
            outbox.put_sealed(TOPIC, broken, now=T0)

        def wrong_number(seq: int) -> Sealed:
            return SEALER.seal(Kind.SUMMARY, {}, now=T0, clock_synced=False, seq=seq + 5)

        with pytest.raises(TypeError):
            outbox.put_sealed(TOPIC, wrong_number, now=T0)

        def same_id(seq: int) -> Sealed:
            again = SEALER.seal(Kind.SUMMARY, {}, now=T0, clock_synced=False, seq=seq)
            return Sealed(first.message_id, again.kind, again.token, seq)

        with pytest.raises(DuplicateMessageError):
            outbox.put_sealed(TOPIC, same_id, now=T0)
        assert outbox.depth() == 1
        assert _put(outbox).seq == 2  # never sent, so the number was free


_CHILD = r"""
import sys
from datetime import UTC, datetime
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_outbox_sequence import _put
from mynabox.adapters.outbox import Outbox

outbox = Outbox(Path(sys.argv[1]))
while True:
    sealed = _put(outbox)
    if sealed.seq % 3 == 0:
        outbox.ack(sealed.message_id)  # some leave, as they would on a PUBACK
    print(sealed.seq, flush=True)  # after the commit
"""


def test_kill_9_never_reuses_a_committed_number(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rng = random.Random(7)
    committed: list[int] = []
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # it is running (imports take a while)
        time.sleep(rng.random() * 0.3)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
        run = [int(line) for line in (first + out).split()]
        assert run, "the child committed nothing before the kill"
        assert run == sorted(set(run)) and (not committed or run[0] > committed[-1])
        committed += run
    with Outbox(path) as outbox:
        assert _put(outbox).seq > committed[-1]
        kept = [i.seq for i in outbox.next_batch(100_000)]
        assert kept == sorted(set(kept)) and set(kept) >= {s for s in committed if s % 3}
