"""The reference receiver's decisions (no broker): open, check topic and device, dedupe across restarts."""

from __future__ import annotations

import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mynabox.payload.envelope import Kind
from mynabox.payload.keys import generate_device_key, load_private_key
from mynabox.payload.seal import Opened, Sealer
from mynabox.receiver import (
    Accepted,
    Duplicate,
    ReceiverCore,
    Rejected,
    SeenStore,
    format_opened,
    parse_topic,
    write_json,
)
from mynabox.testing.broker import DeliveryKit
from mynabox.testing.patients import patient, summary_for

NOW = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
TODAY = date(2026, 4, 1)
DEV = "ambulance-01"
OTHER = "ambulance-02"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> DeliveryKit:
    return DeliveryKit.create(tmp_path_factory.mktemp("kit"), devices=(DEV, OTHER))


@pytest.fixture
def core(kit: DeliveryKit, tmp_path: Path):
    seen = SeenStore(tmp_path / "seen.sqlite3")
    sunk: list[Opened] = []
    core = ReceiverCore(kit.opener(), seen, sunk.append)
    core.sunk = sunk  # type: ignore[attr-defined]
    try:
        yield core
    finally:
        seen.close()


def seal(kit: DeliveryKit, device: str = DEV, kind: Kind = Kind.SUMMARY, body=None) -> bytes:
    body = {"n": 1} if body is None else body
    return kit.sealer(device).seal(kind, body, now=NOW, clock_synced=True).token


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
    impostor = Sealer(DEV, generate_device_key(), load_private_key(kit.gateway_key_file).public_key())
    token = impostor.seal(Kind.SUMMARY, {"n": 1}, now=NOW, clock_synced=True).token
    verdict = core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert verdict == Rejected("signature")


def test_message_for_another_gateway_is_rejected(kit: DeliveryKit, core: ReceiverCore) -> None:
    sealer = Sealer(DEV, load_private_key(kit.device_key_files[DEV]), generate_device_key().public_key())
    token = sealer.seal(Kind.SUMMARY, {"n": 1}, now=NOW, clock_synced=True).token
    assert core.handle(f"mynabox/{DEV}/summary", token, now=NOW) == Rejected("decrypt")


def test_unknown_device_expired_and_topic_checks(kit: DeliveryKit, core: ReceiverCore) -> None:
    stranger = Sealer(
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


def test_parse_topic() -> None:
    assert parse_topic("mynabox/a-1/summary") == ("a-1", "summary")
    assert parse_topic("mynabox/a-1/audit") == ("a-1", "audit")
    for bad in ("mynabox/+/summary", "mynabox//summary", "mynabox/a/b/summary", "mynabox/a/availability"):
        assert parse_topic(bad) is None


def test_summary_prints_in_japanese_with_flags(kit: DeliveryKit, core: ReceiverCore) -> None:
    person = patient("warfarin-elderly")
    summary = summary_for(person, TODAY)
    assert summary is not None
    token = seal(kit, body={"summary": summary.to_json(), "consent": "oral-consent"})
    verdict = core.handle(f"mynabox/{DEV}/summary", token, now=NOW)
    assert isinstance(verdict, Accepted)
    text = format_opened(verdict.opened, today=TODAY)
    assert f"患者: {person.name}" in text
    assert f"生年月日: {person.birth_date.isoformat()}" in text
    assert "薬剤:" in text and "ワルファリン" in text
    assert "⚠ 注意:" in text


def test_card_record_and_audit_print(kit: DeliveryKit, core: ReceiverCore) -> None:
    card = core.handle(
        f"mynabox/{DEV}/summary", seal(kit, kind=Kind.CARD_RECORD, body={"certificate": "..."}), now=NOW
    )
    assert isinstance(card, Accepted)
    assert "カード記録" in format_opened(card.opened, today=TODAY)
    audit = core.handle(
        f"mynabox/{DEV}/audit",
        seal(kit, kind=Kind.AUDIT, body={"record": {"outcome": "card-record"}}),
        now=NOW,
    )
    assert isinstance(audit, Accepted)
    assert "監査記録: card-record（カード記録送信（照会失敗））" in format_opened(audit.opened, today=TODAY)


def test_json_out_is_private_and_idempotent(kit: DeliveryKit, core: ReceiverCore, tmp_path: Path) -> None:
    verdict = core.handle(f"mynabox/{DEV}/summary", seal(kit, body={"k": "値"}), now=NOW)
    assert isinstance(verdict, Accepted)
    first = write_json(tmp_path / "out", verdict.opened)
    second = write_json(tmp_path / "out", verdict.opened)
    assert first == second == tmp_path / "out" / DEV / f"{verdict.opened.message_id}.json"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert '"k": "値"' in first.read_text(encoding="utf-8")
    assert len(list((tmp_path / "out" / DEV).iterdir())) == 1


def test_every_audit_outcome_has_a_japanese_label() -> None:
    from mynabox.payload.audit import Outcome
    from mynabox.receiver import OUTCOME_LABELS

    assert set(OUTCOME_LABELS) == {o.value for o in Outcome}
