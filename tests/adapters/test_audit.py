"""The audit log on disk: chain continues across reopen, torn tail cut, tampering found, `audit verify`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mynabox.adapters.audit import AuditLog, AuditLogError, verify_file
from mynabox.commands import audit as audit_command
from mynabox.payload.audit import GENESIS, AuditRecord
from mynabox.payload.keys import Secret
from mynabox.vocab import ConsentMode, Outcome

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def record(n: int) -> AuditRecord:
    return AuditRecord(
        time=T0 + timedelta(minutes=n),
        device_id="ambulance-01",
        unit_id="unit-7",
        crew_id=None,
        consent=ConsentMode.ORAL_CONSENT,
        outcome=Outcome.DELIVERED_SUMMARY,
        card_hash=f"hmac-sha256:{n:064x}",
        clock_synced=True,
        message_id=f"{n:032x}",
    )


def run_verify(path: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    audit_command.add_arguments(parser)
    return audit_command.run(parser.parse_args(["verify", "--path", str(path), *extra]))


def test_append_chains_and_reopen_continues(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    first = log.append(record(1))
    assert first.prev_hash == GENESIS
    second = log.append(record(2))
    assert second.prev_hash == first.hash
    reopened = AuditLog(path)
    assert reopened.head == second.hash and len(reopened) == 2
    third = reopened.append(record(3))
    assert third.prev_hash == second.hash
    assert [e.record for e in reopened.entries()] == [record(1), record(2), record(3)]
    assert reopened.verify().ok
    assert reopened.verify(expected_head=third.hash).ok
    assert not reopened.verify(expected_head=second.hash).ok


def test_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append(record(1))
    good = log.append(record(2))
    full = path.read_bytes()
    line = AuditLog(tmp_path / "other.jsonl").append(record(3)).to_json_line().encode()
    path.write_bytes(full + line[: len(line) // 2])  # a crash in the middle of the write
    verdict, head = verify_file(path)
    assert verdict.ok and head == good.hash
    recovered = AuditLog(path)
    assert recovered.head == good.hash and path.read_bytes() == full
    assert recovered.append(record(3)).prev_hash == good.hash
    assert recovered.verify().ok


def test_edited_entry_is_found_by_verify_and_the_command(tmp_path: Path, capsys) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for n in range(4):
        log.append(record(n))
    assert run_verify(path) == 0
    assert capsys.readouterr().out.startswith("OK 4 entries")
    lines = path.read_text().splitlines()
    doc = json.loads(lines[1])
    doc["record"]["outcome"] = "card-record"
    lines[1] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    verdict = AuditLog(path).verify()
    assert not verdict.ok and verdict.first_bad_index == 1
    assert run_verify(path) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL at entry 1") and out.count("\n") == 1


def test_deleted_entry_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for n in range(3):
        log.append(record(n))
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[2] + "\n")
    assert not AuditLog(path).verify().ok


def test_damaged_last_line_is_an_error_not_a_repair(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append(record(1))
    with path.open("ab") as f:
        f.write(b"{not json}\n")
    with pytest.raises(AuditLogError):
        AuditLog(path)
    assert run_verify(path) == 1


def test_keyed_chain_needs_the_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(b"k" * 32)
    log = AuditLog(path, key=Secret(b"k" * 32))
    log.append(record(1))
    assert run_verify(path, "--key", str(key_file)) == 0
    assert run_verify(path) == 1  # unkeyed hashes differ
    assert run_verify(tmp_path / "missing.jsonl") == 1
