"""The receiving side shows the flags the box showed, from the message (not a re-derivation that could
differ: another drug table, another day for the 5-year surgery window)."""

from __future__ import annotations

from gateway.conftest import DAY, NOW, seal_and_open  # tests/ is on sys.path
from mynabox.gateway.formatting import format_opened, shown_flags
from mynabox.gateway.page import entry_for, render_page
from mynabox.summary.flags import derive_flags, flags_from_json, flags_json
from mynabox.summary.model import Summary
from mynabox_testkit.messages import patient_body
from mynabox_testkit.patients import PATIENTS, patient


def test_flags_read_back_from_the_message_are_the_ones_derived() -> None:
    for p in PATIENTS:
        kind, body, _ = patient_body(p, NOW)
        if kind.value == "summary":
            summary = Summary.from_json(body["summary"])  # type: ignore[arg-type]
            assert flags_from_json(body["flags"]) == derive_flags(summary, today=NOW.date())
            assert flags_json(flags_from_json(body["flags"])) == body["flags"]


def test_page_list_and_terminal_show_the_message_flags() -> None:
    kind, body, _ = patient_body(patient("warfarin-elderly"), NOW)
    shown = seal_and_open(kind, body)
    page = render_page(shown)
    assert "抗凝固薬" in page and "ワルファリンK錠1mg「F」" in page
    assert entry_for(shown, NOW).flags == ("抗凝固薬",)
    assert "⚠ 注意: 抗凝固薬" in format_opened(shown, today=DAY)
    # A box that showed nothing (say, an older drug table): the hospital sees nothing either.
    quiet = seal_and_open(kind, {**body, "flags": []})
    summary = Summary.from_json(body["summary"])  # type: ignore[arg-type]
    assert derive_flags(summary, today=DAY) and shown_flags(quiet.body, summary) == ()
    assert "該当なし" in render_page(quiet)
    assert entry_for(quiet, NOW).flags == ()
    assert "注意事項: なし" in format_opened(quiet, today=DAY)
