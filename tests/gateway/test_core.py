"""The reference receiver's decisions and its store (no broker): open, check topic and device, dedupe and
refuse replays across restarts, quarantine what is refused."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings

from gateway.receiving import DEV, NOW, OTHER, TODAY, seal  # tests/ is on sys.path
from mynabox.adapters.keyfiles import load_private_key
from mynabox.gateway.core import Accepted, Duplicate, ReceiverCore, Rejected
from mynabox.gateway.formatting import format_opened
from mynabox.gateway.store import REORDER_WINDOW, SeenStore
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, Kind
from mynabox.payload.keys import generate_device_key
from mynabox.payload.seal import Opened, Opener, Sealer
from mynabox_testkit.broker import DeliveryKit, NumberedSealer
from payload.test_claims import hostile_claims  # tests/ is on sys.path (rootdir-relative imports)
from support.envelopes import seal_claims


def test_accepts_once_then_drops_the_duplicate(kit: DeliveryKit, core: ReceiverCore) -> None:
    token = seal(kit)
    verdict = core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert isinstance(verdict, Accepted) and verdict.opened.device_id == DEV
    again = core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert isinstance(again, Duplicate) and again.message_id == verdict.opened.message_id
    assert len(core.sunk) == 1  # type: ignore[attr-defined]
    assert core.counts == {"accepted": 1, "duplicate": 1}


def test_seen_ids_survive_a_restart(kit: DeliveryKit, tmp_path: Path) -> None:
    token = seal(kit)
    first = SeenStore(tmp_path / "seen.sqlite3")
    assert isinstance(
        ReceiverCore(kit.opener(), first, lambda o: None).handle(f"mynabox/{DEV}/summary", token, now=NOW),
        Accepted,
    )
    first.close()
    second = SeenStore(tmp_path / "seen.sqlite3")
    try:
        verdict = ReceiverCore(kit.opener(), second, lambda o: None).handle(
            f"mynabox/{DEV}/summary", token, now=NOW
        )
        assert isinstance(verdict, Duplicate)
        assert second.prune(timedelta(days=1), now=NOW + timedelta(days=2)) == 1
        assert len(second) == 0
    finally:
        second.close()


def test_sink_failure_leaves_the_id_unseen(kit: DeliveryKit, tmp_path: Path) -> None:
    seen = SeenStore(tmp_path / "seen.sqlite3")

    def broken(_opened: Opened) -> None:
        raise OSError("disk full")

    token = seal(kit)
    with pytest.raises(OSError):
        ReceiverCore(kit.opener(), seen, broken).handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert isinstance(
        ReceiverCore(kit.opener(), seen, lambda o: None).handle(f"mynabox/{DEV}/summary", token, now=NOW),
        Accepted,
    )
    seen.close()


@pytest.mark.parametrize("position", [10, 200, -20])
def test_tampered_byte_is_rejected_with_a_reason(kit: DeliveryKit, core: ReceiverCore, position: int) -> None:
    token = bytearray(seal(kit))
    token[position] = ord("A") if token[position] != ord("A") else ord("B")
    verdict = core.handle(f"mynabox/{DEV}/summary", bytes(token), now=NOW)
    assert isinstance(verdict, Rejected) and verdict.reason
    assert not core.sunk  # type: ignore[attr-defined]


def test_foreign_signing_key_is_rejected(kit: DeliveryKit, core: ReceiverCore) -> None:
    impostor = NumberedSealer(DEV, generate_device_key(), load_private_key(kit.gateway_key_file).public_key())
    token = impostor.seal(Kind.SUMMARY, {"n": 1}, now=NOW, clock_synced=True).token
    verdict = core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert verdict == Rejected("signature")


def test_message_for_another_gateway_is_rejected(kit: DeliveryKit, core: ReceiverCore) -> None:
    sealer = NumberedSealer(
        DEV, load_private_key(kit.device_key_files[DEV]), generate_device_key().public_key()
    )
    token = sealer.seal(Kind.SUMMARY, {"n": 1}, now=NOW, clock_synced=True).token
    assert core.handle(f"mynabox/{DEV}/summary", token, now=NOW) == Rejected("decrypt")


def test_unknown_device_expired_and_topic_checks(kit: DeliveryKit, core: ReceiverCore) -> None:
    stranger = NumberedSealer(
        "ambulance-99", generate_device_key(), load_private_key(kit.gateway_key_file).public_key()
    )
    token = stranger.seal(Kind.SUMMARY, {}, now=NOW, clock_synced=True).token
    assert core.handle("mynabox/ambulance-99/summary", token, now=NOW) == Rejected("unknown-device")
    assert core.handle(f"mynabox/{DEV}/summary", seal(kit), now=NOW + timedelta(days=30)) == Rejected(
        "expired"
    )
    assert core.handle(f"mynabox/{OTHER}/summary", seal(kit), now=NOW) == Rejected("device-topic")
    assert core.handle(f"mynabox/{DEV}/audit", seal(kit), now=NOW) == Rejected("kind-topic")
    assert core.handle(f"mynabox/{DEV}/state", seal(kit), now=NOW) == Rejected("topic")
    assert core.handle("other/x/summary", seal(kit), now=NOW) == Rejected("topic")
    assert core.handle(f"mynabox/{DEV}/summary", b"\x00" * 50, now=NOW) == Rejected("format")
    assert core.counts["rejected"] == 7


# --- no message stops the receiver: every refusal is acknowledged, counted and quarantined ---------------

HOSTILE_CLAIMS: list[dict[str, object]] = [
    {"iat": 253402300800},  # year 10000
    {"iat": 253402300799},  # 9999-12-31 UTC: year 10000 in JST
    {"iat": 10**30},
    {"iat": -5},
    {"iat": 1.5},
    {"iat": True},
    {"iat": "2026-04-01"},
    {"kind": ["summary"]},
    {"kind": {"a": 1}},
    {"clock_synced": 1},
    {"seq": 0},
    {"seq": 2**64},
    {"seq": False},
    {"body": ["x"]},
    {"device": OTHER},
    {"jti": 7},
]


def _claims(kit: DeliveryKit, device: str = DEV, **override: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "jti": uuid.uuid4().hex,
        "kind": "summary",
        "device": device,
        "iat": int(NOW.timestamp()),
        "clock_synced": False,
        "body": {"n": 1},
        "seq": 1,
    }
    claims.update(override)
    return claims


@pytest.mark.parametrize("override", HOSTILE_CLAIMS, ids=[repr(o)[:40] for o in HOSTILE_CLAIMS])
def test_validly_signed_hostile_claims_are_refused_and_quarantined(
    kit: DeliveryKit, core: ReceiverCore, override: dict[str, object]
) -> None:
    token = seal_claims(kit.sealer(DEV), _claims(kit, **override))
    verdict = core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert isinstance(verdict, Rejected) and verdict.reason
    entries = core._seen.quarantined()  # type: ignore[attr-defined]
    assert [(e.topic, e.reason, e.payload, e.size) for e in entries] == [
        (f"mynabox/{DEV}/summary", verdict.reason, token, len(token))
    ]
    assert core.counts["rejected"] == 1 and not core.sunk  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=hostile_claims())
def test_no_claims_make_the_receiver_raise(
    kit: DeliveryKit, tmp_path: Path, claims: dict[str, object]
) -> None:
    """With the printing sink of `mynabox receive`: whatever opens must also render."""
    seen = SeenStore(tmp_path / f"seen-{uuid.uuid4().hex}.sqlite3")
    try:
        core = ReceiverCore(kit.opener(), seen, lambda opened: print(format_opened(opened, today=TODAY)))
        claims = {**claims, "jti": uuid.uuid4().hex} if claims.get("jti") == "cd" * 16 else claims
        claims = {**claims, "device": DEV} if claims.get("device") == "amb-tokyo-01" else claims
        verdict = core.handle(f"mynabox/{DEV}/summary", seal_claims(kit.sealer(DEV), claims), now=NOW)
        assert isinstance(verdict, Accepted | Rejected)
        assert len(seen.quarantined()) == (0 if isinstance(verdict, Accepted) else 1)
    finally:
        seen.close()


def test_a_sink_failing_on_the_message_is_a_refusal_an_io_failure_is_not(
    kit: DeliveryKit, tmp_path: Path
) -> None:
    seen = SeenStore(tmp_path / "seen.sqlite3")

    def picky(_opened: Opened) -> None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    core = ReceiverCore(kit.opener(), seen, picky)
    assert core.handle(f"mynabox/{DEV}/summary", seal(kit), now=NOW) == Rejected("sink:UnicodeEncodeError")
    assert [e.reason for e in seen.quarantined()] == ["sink:UnicodeEncodeError"]
    seen.close()


def test_quarantine_is_bounded_and_survives_a_restart(
    kit: DeliveryKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mynabox.gateway.store as store

    monkeypatch.setattr(store, "QUARANTINE_MAX_ROWS", 5)
    monkeypatch.setattr(store, "QUARANTINE_MAX_BYTES", 3000)
    seen = SeenStore(tmp_path / "seen.sqlite3")
    core = ReceiverCore(kit.opener(), seen, lambda o: None)
    for n in range(8):
        core.handle(f"mynabox/{DEV}/summary", b"x" * 100 + bytes([n]), now=NOW)
    assert len(seen.quarantined()) == 5
    core.handle(f"mynabox/{DEV}/summary", b"y" * 2850, now=NOW)
    seen.close()
    again = SeenStore(tmp_path / "seen.sqlite3")
    try:
        kept = again.quarantined()
        assert [e.payload[-1:] for e in kept] == [b"\x07", b"y"]  # the newest that fit 3000 bytes
        assert all(e.reason == "format" for e in kept)
    finally:
        again.close()


# --- replays: a per-device sequence, held for any age -------------------------------------------------------


def _unsynced(kit: DeliveryKit, seq: int, device: str = DEV) -> bytes:
    """A box without a synced clock: the opener never expires these, so only the sequence stops a replay."""
    return kit.sealer(device).seal(Kind.SUMMARY, {"n": seq}, now=NOW, clock_synced=False, seq=seq).token


def test_replay_after_the_seen_id_window_is_refused(kit: DeliveryKit, tmp_path: Path) -> None:
    topic = f"mynabox/{DEV}/summary"
    sunk: list[Opened] = []
    seen = SeenStore(tmp_path / "seen.sqlite3")
    core = ReceiverCore(kit.opener(), seen, sunk.append)
    first = _unsynced(kit, 1)
    assert isinstance(core.handle(topic, first, now=NOW), Accepted)
    later = NOW + timedelta(days=15)
    assert seen.prune(timedelta(days=14), now=later) == 1  # the message id is forgotten
    assert core.handle(topic, first, now=later) == Duplicate(sunk[0].message_id, DEV)  # the number is not
    for seq in range(2, REORDER_WINDOW + 3):  # a box's traffic moves the window past it
        assert isinstance(core.handle(topic, _unsynced(kit, seq), now=later), Accepted)
    seen.close()
    restarted = SeenStore(tmp_path / "seen.sqlite3")  # the receiver's store survives its restart
    try:
        core = ReceiverCore(kit.opener(), restarted, sunk.append)
        far = later + timedelta(days=400)
        restarted.prune(timedelta(days=14), now=far)
        assert core.handle(topic, first, now=far) == Rejected("sequence-stale")
        assert restarted.highest(DEV) == REORDER_WINDOW + 2
        assert [e.reason for e in restarted.quarantined()] == ["sequence-stale"]
        assert len(sunk) == REORDER_WINDOW + 2  # every message shown once, the replay never
    finally:
        restarted.close()


def test_sequence_acceptance_rule(kit: DeliveryKit, core: ReceiverCore) -> None:
    topic = f"mynabox/{DEV}/summary"
    assert isinstance(core.handle(topic, _unsynced(kit, 10), now=NOW), Accepted)
    # Late within the window (the box retried a refused message after newer ones): accepted once.
    late = _unsynced(kit, 7)
    assert isinstance(core.handle(topic, late, now=NOW), Accepted)
    assert isinstance(core.handle(topic, late, now=NOW), Duplicate)
    # The same number with another message id: a box never does that.
    assert core.handle(topic, _unsynced(kit, 7), now=NOW) == Rejected("sequence-reused")
    # Numbers are per device.
    assert isinstance(core.handle(f"mynabox/{OTHER}/summary", _unsynced(kit, 3, OTHER), now=NOW), Accepted)
    # Gaps are fine (purged messages never come).
    assert isinstance(core.handle(topic, _unsynced(kit, 10 + REORDER_WINDOW), now=NOW), Accepted)
    assert core.handle(topic, _unsynced(kit, 9), now=NOW) == Rejected("sequence-stale")
    assert isinstance(core.handle(topic, _unsynced(kit, 11), now=NOW), Accepted)
    assert core.counts["accepted"] == 5


def test_the_boundary_of_the_window_is_stale_once_its_id_is_pruned(kit: DeliveryKit, tmp_path: Path) -> None:
    """``seq`` exactly H - W: its number has left the window and its id the seen table, so only the rule's
    ``<=`` refuses it (``<`` let it through: issue 23 item 13)."""
    topic = f"mynabox/{DEV}/summary"
    seen = SeenStore(tmp_path / "seen.sqlite3")
    try:
        core = ReceiverCore(kit.opener(), seen, lambda o: None)
        boundary = _unsynced(kit, 2)
        assert isinstance(core.handle(topic, boundary, now=NOW), Accepted)
        for seq in (REORDER_WINDOW + 1, REORDER_WINDOW + 2):
            assert isinstance(core.handle(topic, _unsynced(kit, seq), now=NOW), Accepted)
        later = NOW + timedelta(days=15)
        assert seen.prune(timedelta(days=14), now=later) == 3
        assert seen.highest(DEV) - REORDER_WINDOW == 2
        assert core.handle(topic, boundary, now=later) == Rejected("sequence-stale")
        # One above the boundary is still inside the window: a number never accepted is new there.
        assert isinstance(core.handle(topic, _unsynced(kit, 3), now=later), Accepted)
    finally:
        seen.close()


class _Box:
    """One life of box DEV: its own envelope key (a re-enrolled box gets a new one)."""

    def __init__(self, gateway: ec.EllipticCurvePrivateKey) -> None:
        self.key = generate_device_key()
        self._sealer = Sealer(DEV, self.key, gateway.public_key())

    def send(self, seq: int) -> bytes:
        return self._sealer.seal(Kind.SUMMARY, {"n": seq}, now=NOW, clock_synced=False, seq=seq).token


def _gateway(
    gateway: ec.EllipticCurvePrivateKey, box: _Box, seen: SeenStore, sunk: list[Opened]
) -> ReceiverCore:
    """The receiver with ``box``'s public key installed as DEV's."""
    opener = Opener(
        gateway,
        {DEV: box.key.public_key()},
        max_age=timedelta(days=7),
        max_skew=timedelta(minutes=5),
        max_size=MAX_MESSAGE_BYTES,
    )
    return ReceiverCore(opener, seen, sunk.append)


def test_a_re_enrolled_box_starts_again_at_1_and_its_old_life_stays_refused(tmp_path: Path) -> None:
    """Issue 23 item 6: re-enrolment is a new key. Its numbers start again at 1 with nothing to run at the
    receiver, and the old life's messages, whose ids the store no longer holds, are never accepted again,
    not even with the old public key put back."""
    topic = f"mynabox/{DEV}/summary"
    gateway = generate_device_key()
    seen = SeenStore(tmp_path / "seen.sqlite3")
    sunk: list[Opened] = []
    try:
        old = _Box(gateway)
        core = _gateway(gateway, old, seen, sunk)
        old_life = [old.send(seq) for seq in range(1, 6)]
        for token in old_life:
            assert isinstance(core.handle(topic, token, now=NOW), Accepted)
        later = NOW + timedelta(days=15)
        assert seen.prune(timedelta(days=14), now=later) == 5  # the old life's ids are gone

        new = _Box(gateway)  # new SD card, new keys, its public key installed as DEV.pem
        core = _gateway(gateway, new, seen, sunk)
        for seq in range(1, 8):
            assert isinstance(core.handle(topic, new.send(seq), now=later), Accepted), seq
        assert seen.highest(DEV) == 7
        assert isinstance(core.handle(topic, old_life[2], now=later), Rejected)  # the old key is unknown

        restored = _gateway(gateway, old, seen, sunk)  # the old public key put back by mistake
        for token in old_life:
            assert restored.handle(topic, token, now=later) == Rejected("key-retired")
        assert restored.handle(topic, old.send(6), now=later) == Rejected("key-retired")
        assert len(sunk) == 5 + 7
    finally:
        seen.close()


def test_forget_device_retires_the_key_and_keeps_replays_out(tmp_path: Path) -> None:
    topic = f"mynabox/{DEV}/summary"
    gateway = generate_device_key()
    seen = SeenStore(tmp_path / "seen.sqlite3")
    sunk: list[Opened] = []
    try:
        assert seen.forget_device(DEV, now=NOW) is None  # nothing accepted: no key known
        box = _Box(gateway)
        core = _gateway(gateway, box, seen, sunk)
        first = box.send(1)
        assert isinstance(core.handle(topic, first, now=NOW), Accepted)
        key = seen.forget_device(DEV, now=NOW)
        assert key == core._opener.thumbprints[DEV]  # type: ignore[attr-defined]
        assert seen.retired(key)
        seen.prune(timedelta(days=14), now=NOW + timedelta(days=15))
        assert core.handle(topic, first, now=NOW) == Rejected("key-retired")
        assert core.handle(topic, box.send(2), now=NOW) == Rejected("key-retired")
        new = _Box(gateway)
        core = _gateway(gateway, new, seen, sunk)
        assert isinstance(core.handle(topic, new.send(1), now=NOW), Accepted)
        assert [e.reason for e in seen.quarantined()] == ["key-retired", "key-retired"]
    finally:
        seen.close()


def test_numbers_kept_before_keys_were_recorded_stay_with_the_first_key(tmp_path: Path) -> None:
    """A store from before this change (no ``key`` column): its numbers are not dropped by the upgrade."""
    path = tmp_path / "seen.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE device_seq (device_id TEXT PRIMARY KEY, high INTEGER NOT NULL)")
        db.execute("INSERT INTO device_seq VALUES (?, ?)", (DEV, 5000))
    db.close()
    topic = f"mynabox/{DEV}/summary"
    gateway = generate_device_key()
    seen = SeenStore(path)
    sunk: list[Opened] = []
    try:
        box = _Box(gateway)
        core = _gateway(gateway, box, seen, sunk)
        assert core.handle(topic, box.send(1), now=NOW) == Rejected("sequence-stale")
        assert seen.forget_device(DEV, now=NOW) is None  # no key recorded yet: nothing to retire
        assert isinstance(core.handle(topic, box.send(5001), now=NOW), Accepted)  # the key adopts them
        assert core.handle(topic, box.send(2), now=NOW) == Rejected("sequence-stale")
        new = _Box(gateway)
        core = _gateway(gateway, new, seen, sunk)
        assert isinstance(core.handle(topic, new.send(1), now=NOW), Accepted)
    finally:
        seen.close()


def test_old_format_is_refused_with_a_reason(kit: DeliveryKit, core: ReceiverCore) -> None:
    old = {k: v for k, v in _claims(kit).items() if k != "seq"}
    token = seal_claims(kit.sealer(DEV), old)
    assert core.handle(f"mynabox/{DEV}/summary", token, now=NOW) == Rejected("no-sequence")
