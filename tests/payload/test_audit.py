"""The audit chain: encoding round trips, and every single edit, deletion, insertion or swap is detected."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mynabox.payload.audit import (
    GENESIS,
    AuditFormatError,
    AuditRecord,
    ChainedAudit,
    PublishedAudit,
    chain,
    entry_hash,
    published_body,
    verify_chain,
    verify_lines,
)
from mynabox.payload.keys import Secret
from mynabox.vocab import ConsentMode, Outcome

KEY = Secret(b"k" * 32)
T0 = datetime(2026, 4, 1, 9, 30, 0, 123456, tzinfo=UTC)

tokens = st.from_regex(r"[a-z][a-z0-9_.:-]{0,10}", fullmatch=True)
RECORD_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "time": st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    "device_id": st.from_regex(r"[a-z0-9][a-z0-9-]{0,12}", fullmatch=True),
    "unit_id": st.none() | tokens,
    "crew_id": st.none() | tokens,
    "consent": st.sampled_from(ConsentMode),
    "outcome": st.sampled_from(Outcome),
    "card_hash": st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    "clock_synced": st.booleans(),
    "message_id": st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
}
records = st.builds(AuditRecord, **RECORD_FIELDS)  # format 2 records, as the box writes them


def record(n: int = 0, **override: object) -> AuditRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(minutes=n),
        "device_id": "amb-tokyo-01",
        "unit_id": "unit-3",
        "crew_id": "crew-17",
        "consent": ConsentMode.ORAL_CONSENT,
        "outcome": Outcome.DELIVERED_SUMMARY,
        "card_hash": f"{n:064x}",
        "clock_synced": True,
        "message_id": f"{n:032x}",
    }
    fields.update(override)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def build(recs: list[AuditRecord], key: Secret[bytes] | None = KEY) -> list[ChainedAudit]:
    entries, prev = [], GENESIS
    for r in recs:
        entry = chain(prev, r, key=key)
        entries.append(entry)
        prev = entry.hash
    return entries


def test_json_line_round_trip_is_exact() -> None:
    entry = chain(GENESIS, record())
    line = entry.to_json_line()
    assert "\n" not in line
    assert ChainedAudit.from_json_line(line) == entry
    assert ChainedAudit.from_json_line(line).to_json_line() == line
    assert json.loads(line)["record"]["time"] == "2026-04-01T09:30:00.123456Z"


@given(recs=st.lists(records, min_size=1, max_size=6))
def test_any_chain_round_trips_and_verifies(recs: list[AuditRecord]) -> None:
    entries = build(recs)
    reparsed = [ChainedAudit.from_json_line(e.to_json_line()) for e in entries]
    assert reparsed == entries
    assert verify_chain(reparsed, key=KEY, expected_head=entries[-1].hash) == verify_chain(entries, key=KEY)
    assert verify_chain(entries, key=KEY).ok
    assert verify_lines([e.to_json_line() for e in entries], key=KEY).checked == len(entries)


def test_canonical_encoding_is_stable_across_time_zones() -> None:
    jst = timezone(timedelta(hours=9))
    assert chain(GENESIS, record()).hash == chain(GENESIS, record(time=T0.astimezone(jst))).hash


def test_keyed_and_unkeyed_hashes_differ() -> None:
    r = record()
    assert entry_hash(GENESIS, r) != entry_hash(GENESIS, r, key=KEY)
    assert not verify_chain(build([r], key=None), key=KEY).ok
    assert not verify_chain(build([r], key=KEY), key=None).ok


# One strategy per field of AuditRecord (a test fails when a field has none: a new field is covered).
FIELD_VALUES: dict[str, st.SearchStrategy[object]] = {
    **RECORD_FIELDS,
    "v1_items": st.none() | st.lists(tokens, max_size=3).map(tuple),
}


def test_every_record_field_has_values_to_edit() -> None:
    assert set(FIELD_VALUES) == {f.name for f in dataclasses.fields(AuditRecord)}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(AuditRecord)])
@settings(max_examples=30)  # per field: 300 edits in all
@given(recs=st.lists(records, min_size=1, max_size=6), data=st.data())
def test_any_single_edit_is_detected(field: str, recs: list[AuditRecord], data: st.DataObject) -> None:
    """One field of one record changed, the rest kept: a hash that skipped that field would pass."""
    entries = build(recs)
    i = data.draw(st.integers(0, len(entries) - 1))
    original = entries[i].record
    value = data.draw(FIELD_VALUES[field].filter(lambda v: v != getattr(original, field)))
    entries[i] = dataclasses.replace(entries[i], record=dataclasses.replace(original, **{field: value}))
    verdict = verify_chain(entries, key=KEY)
    assert (verdict.ok, verdict.first_bad_index, verdict.checked) == (False, i, i)


@given(recs=st.lists(records, min_size=2, max_size=6), data=st.data())
def test_any_single_deletion_is_detected(recs: list[AuditRecord], data: st.DataObject) -> None:
    entries = build(recs)
    head = entries[-1].hash
    i = data.draw(st.integers(0, len(entries) - 1))
    del entries[i]
    verdict = verify_chain(entries, key=KEY, expected_head=head)
    assert not verdict.ok
    # the entry after the hole (or, for the last one, the anchor) is where it shows
    assert verdict.first_bad_index == i


@given(recs=st.lists(records, min_size=2, max_size=6), data=st.data())
def test_any_swap_is_detected(recs: list[AuditRecord], data: st.DataObject) -> None:
    entries = build(recs)
    i = data.draw(st.integers(0, len(entries) - 2))
    j = data.draw(st.integers(i + 1, len(entries) - 1))
    entries[i], entries[j] = entries[j], entries[i]
    verdict = verify_chain(entries, key=KEY)
    assert (verdict.ok, verdict.first_bad_index) == (False, i)


@given(recs=st.lists(records, min_size=1, max_size=5), extra=records, data=st.data())
def test_any_insertion_is_detected_even_when_well_formed(
    recs: list[AuditRecord], extra: AuditRecord, data: st.DataObject
) -> None:
    entries = build(recs)
    i = data.draw(st.integers(0, len(entries)))
    prev = entries[i - 1].hash if i else GENESIS
    forged = chain(prev, extra, key=None)  # the forger lacks the audit key
    entries.insert(i, forged)
    verdict = verify_chain(entries, key=KEY)
    assert (verdict.ok, verdict.first_bad_index) == (False, i)


def test_unkeyed_rewrite_is_caught_by_the_anchor_only() -> None:
    """Why an anchor (or a key) is needed: an unkeyed chain can be recomputed after an edit."""
    original = build([record(n) for n in range(4)], key=None)
    forged = build([record(0), record(1, outcome=Outcome.NOT_REGISTERED), record(2), record(3)], key=None)
    assert verify_chain(forged).ok  # self-consistent...
    verdict = verify_chain(forged, expected_head=original[-1].hash)
    assert (verdict.ok, verdict.first_bad_index) == (False, 4)  # ...but not with the published head


def test_truncation_at_head_and_tail() -> None:
    entries = build([record(n) for n in range(5)])
    head = verify_chain(entries[2:], key=KEY)
    assert (head.ok, head.first_bad_index) == (False, 0)
    assert "head" in head.reason
    tail = verify_chain(entries[:3], key=KEY, expected_head=entries[-1].hash)
    assert (tail.ok, tail.checked, tail.first_bad_index) == (False, 3, 3)
    segment = verify_chain(entries[2:], key=KEY, start=entries[1].hash, expected_head=entries[-1].hash)
    assert segment.ok and segment.checked == 3


def test_empty_chain() -> None:
    assert verify_chain([], key=KEY) == verify_chain([], key=KEY, expected_head=GENESIS)
    assert verify_chain([]).ok and verify_chain([]).checked == 0
    assert not verify_chain([], expected_head="1" * 64).ok


def test_verify_lines_reports_a_malformed_line_and_skips_blanks() -> None:
    lines = [e.to_json_line() for e in build([record(n) for n in range(4)])]
    assert verify_lines([*lines[:2], "", *lines[2:], "  "], key=KEY).ok
    broken = [*lines[:2], lines[2][:-5], lines[3]]
    verdict = verify_lines(broken, key=KEY)
    assert (verdict.ok, verdict.first_bad_index, verdict.checked) == (False, 2, 2)
    assert "malformed" in verdict.reason


def _forge(line: str, how: str) -> str:
    """Bytes a reader that parses leniently takes for ``line``: the record it hashes is the real one."""
    if how == "duplicated outcome":  # the real key last: json keeps the last value
        return line.replace('"outcome":', '"outcome":"busy","outcome":', 1)
    if how == "forged first record":
        forged = json.dumps(record(9, outcome="busy").to_dict(), sort_keys=True, separators=(",", ":"))
        return line.replace('"record":', f'"record":{forged},"record":', 1)
    if how == "padding":
        return f" {line}\t"
    if how == "spaced separators":
        return json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False)
    if how == "keys unsorted":
        raw = json.loads(line)
        return json.dumps({k: raw[k] for k in reversed(raw)}, separators=(",", ":"), ensure_ascii=False)
    if how == "escaped ascii":
        return line.replace('"prev"', '"\\u0070rev"', 1)
    raise AssertionError(how)


FORGERIES = [
    "duplicated outcome",
    "forged first record",
    "padding",
    "spaced separators",
    "keys unsorted",
    "escaped ascii",
]


@pytest.mark.parametrize("how", FORGERIES)
def test_a_line_must_be_the_bytes_the_hash_covers(how: str) -> None:
    """Issue 23 item 7: each forgery parses to an entry whose hash verifies, so only comparing the line with
    its canonical form (and refusing duplicated keys) refuses it."""
    lines = [e.to_json_line() for e in build([record(n) for n in range(3)])]
    forged = _forge(lines[1], how)
    assert forged != lines[1]
    assert json.loads(forged)["hash"] == json.loads(lines[1])["hash"]
    with pytest.raises(AuditFormatError):
        ChainedAudit.from_json_line(forged)
    with pytest.raises(AuditFormatError):
        ChainedAudit.from_json_line(forged.encode("utf-8"))
    verdict = verify_lines([lines[0], forged, lines[2]], key=KEY)
    assert (verdict.ok, verdict.first_bad_index, verdict.checked) == (False, 1, 1)
    assert "malformed" in verdict.reason


def test_audit_verify_refuses_a_line_the_hash_does_not_cover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command an operator runs, on a log whose second line holds a duplicated ``outcome``."""
    from mynabox.cli import main

    lines = [e.to_json_line() for e in build([record(n) for n in range(3)], key=None)]
    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["audit", "verify", "--path", str(log)]) == 0
    lines[1] = _forge(lines[1], "duplicated outcome")
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["audit", "verify", "--path", str(log)]) == 1
    assert capsys.readouterr().out.startswith("FAIL at entry 1 after 1 good: malformed entry")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["record"].update(extra=1),
        lambda d: d["record"].pop("crew"),
        lambda d: d["record"].update(v=3),
        lambda d: d["record"].update(v=1),  # format 1 needs its items
        lambda d: d["record"].update(v=True),
        lambda d: d["record"].update(time="2026-04-01T09:30:00Z"),
        lambda d: d["record"].update(time="2026-02-30T09:30:00.000000Z"),
        lambda d: d["record"].update(consent="maybe"),
        lambda d: d["record"].update(outcome="lost"),
        lambda d: d["record"].update(items=[]),  # format 2 has none
        lambda d: d["record"].update(v=1, items="medications"),
        lambda d: d["record"].update(v=1, items=["ワルファリン"]),
        lambda d: d["record"].update(clock_synced=1),
        lambda d: d["record"].update(card="not a hash"),
        lambda d: d["record"].update(device=None),
        lambda d: d.update(prev="XYZ"),
        lambda d: d.update(extra=0),
        lambda d: d.update(record=[]),
    ],
)
def test_malformed_lines_raise_a_typed_error(mutate: object) -> None:
    raw = json.loads(chain(GENESIS, record()).to_json_line())
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(AuditFormatError):
        ChainedAudit.from_json_line(json.dumps(raw, ensure_ascii=False))


@pytest.mark.parametrize("line", ["", "[]", "{", '{"a": 1.5}', '{"a": NaN}', "null"])
def test_non_objects_and_floats_are_refused(line: str) -> None:
    with pytest.raises(AuditFormatError):
        ChainedAudit.from_json_line(line)


@pytest.mark.parametrize(
    "override",
    [
        {"time": datetime(2026, 1, 1)},  # naive
        {"device_id": "amb/01"},
        {"unit_id": "山田"},
        {"crew_id": "Yamada Taro"},  # spaces: a name, not an id
        {"v1_items": ("インスリン",)},
        {"v1_items": tuple(f"i{n}" for n in range(65))},
        {"card_hash": "12 34"},
        {"clock_synced": "yes"},
        {"message_id": "x"},
        {"outcome": "unknown"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_records_refuse_free_text(override: dict[str, object]) -> None:
    with pytest.raises((AuditFormatError, ValueError)):
        record(**override)


def test_record_errors_name_the_field_not_the_value() -> None:
    with pytest.raises(AuditFormatError) as info:
        record(crew_id="Yamada Taro")
    assert "Yamada" not in str(info.value) and "crew_id" in str(info.value)


# --- format 2: no health data in the chain; what was shown goes only to the gateway (issue 10 item 11) ----


def _v1_line(prev: str, n: int, items: list[str]) -> tuple[str, str]:
    """A line as format 1 wrote it (items in the record), hashed here without our code."""
    import hashlib
    import hmac

    rec = {
        "v": 1,
        "time": (T0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "device": "amb-tokyo-01",
        "unit": None,
        "crew": None,
        "consent": "oral-consent",
        "items": items,
        "outcome": "delivered-summary",
        "card": f"{n:016x}",
        "clock_synced": True,
        "message": f"{n:032x}",
    }
    body = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    digest = hmac.new(KEY.reveal(), prev.encode() + body, hashlib.sha256).hexdigest()
    line = json.dumps({"record": rec, "prev": prev, "hash": digest}, sort_keys=True, separators=(",", ":"))
    return line, digest


def test_a_record_holds_no_items_shown() -> None:
    line = chain(GENESIS, record()).to_json_line()
    raw = json.loads(line)["record"]
    assert raw["v"] == 2 and "items" not in raw
    assert "anticoagulant" not in line


def test_a_format_1_log_still_verifies_and_the_chain_continues_in_format_2() -> None:
    first, h1 = _v1_line(GENESIS, 1, ["anticoagulant"])
    second, h2 = _v1_line(h1, 2, [])
    third = chain(h2, record(3), key=KEY)
    lines = [first, second, third.to_json_line()]
    assert verify_lines(lines, key=KEY, expected_head=third.hash).ok
    reparsed = ChainedAudit.from_json_line(first)
    assert reparsed.to_json_line() == first and reparsed.record.v1_items == ("anticoagulant",)
    tampered = first.replace('"anticoagulant"', '"insulin"')
    assert not verify_lines([tampered, second], key=KEY).ok


def test_published_body_carries_what_was_shown_bound_to_the_entry() -> None:
    entry = chain(GENESIS, record(), key=KEY)
    body = published_body(entry, ("anticoagulant", "dialysis"))
    assert {k: v for k, v in body.items() if k != "shown"} == entry.to_dict()
    parsed = PublishedAudit.from_dict(json.loads(json.dumps(body)))
    assert parsed.entry == entry and parsed.items == ("anticoagulant", "dialysis")
    assert verify_chain([parsed.entry], key=KEY).ok


@pytest.mark.parametrize(
    "shown", [["ワルファリン"], "anticoagulant", [1], [f"i{n}" for n in range(65)], ["a b"], None]
)
def test_published_items_refuse_free_text(shown: object) -> None:
    entry = chain(GENESIS, record(), key=KEY)
    with pytest.raises(AuditFormatError):
        PublishedAudit.from_dict({**entry.to_dict(), "shown": shown})
    if isinstance(shown, list):
        with pytest.raises(AuditFormatError):
            published_body(entry, shown)  # type: ignore[arg-type]


def test_published_body_without_shown_is_refused() -> None:
    with pytest.raises(AuditFormatError):
        PublishedAudit.from_dict(chain(GENESIS, record()).to_dict())


@pytest.mark.parametrize("year", [1, 817, 999, 2026, 9999])
def test_time_of_any_year_round_trips(year: int) -> None:
    # Found by fuzzing: strftime("%Y") wrote year 817 as "817", which the reader refuses as not canonical.
    entry = chain(GENESIS, record(time=datetime(year, 11, 25, 9, 0, tzinfo=UTC)), key=KEY)
    line = entry.to_json_line()
    assert ChainedAudit.from_json_line(line) == entry
    assert verify_lines([line], key=KEY).ok
