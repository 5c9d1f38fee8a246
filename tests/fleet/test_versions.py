"""`fleet versions` reads retained state documents: hostile ones are listed as unreadable, never raise."""

from __future__ import annotations

from mynabox.fleet import versions


def test_a_state_document_becomes_a_row_and_odd_ones_say_why() -> None:
    good = versions.parse_state(
        "amb-1",
        b'{"version":"0.3.0","slot":"B","update_result":"good","update_version":"0.3.0",'
        b'"update_at":"2026-12-07T00:05:00+00:00","state":"idle","outbox_depth":0}',
    )
    old = versions.parse_state("amb-2", b'{"version":"0.2.0","state":"reading"}')  # before this change
    odd = [
        versions.parse_state("amb-3", b"[" * 4000),
        versions.parse_state("amb-4", b"x" * 5000),
        versions.parse_state("amb-5", b"[]"),
        versions.parse_state("amb-6", b'{"version":"\\u001b[2J0.1", "slot": {"a": 1}}'),
    ]
    lines = versions.table([old, good, *odd])
    assert lines[0].split() == list(versions.COLUMNS)
    assert lines[1].split() == ["amb-1", "0.3.0", "B", "good", "0.3.0", "2026-12-07T00:05:00+00:00", "idle"]
    assert lines[2].split() == ["amb-2", "0.2.0", "-", "-", "-", "-", "reading"]
    assert "(state document is not JSON)" in lines[3]
    assert "(state document over 4096 bytes)" in lines[4]
    assert "(state document is not an object)" in lines[5]
    assert "\x1b" not in lines[6] and "?[2J0.1" in lines[6]
