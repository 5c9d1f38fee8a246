"""The operator's Japanese rendering of opened and quarantined messages; device text cannot drive the
terminal."""

from __future__ import annotations

import pytest

from gateway.receiving import DEV, NOW, TODAY, seal  # tests/ is on sys.path
from mynabox.gateway.core import Accepted, ReceiverCore
from mynabox.gateway.formatting import format_opened
from mynabox.payload.envelope import Kind
from mynabox_testkit.broker import DeliveryKit
from mynabox_testkit.patients import patient, summary_for


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


def test_every_audit_outcome_has_a_japanese_label() -> None:
    from mynabox.gateway.formatting import OUTCOME_LABELS
    from mynabox.payload.audit import Outcome

    assert set(OUTCOME_LABELS) == {o.value for o in Outcome}


# --- device text on the operator's terminal --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ワルファリン錠　1mg", "ワルファリン錠　1mg"),  # Japanese and the ideographic space stay as they are
        ("\x1b[2J\x1b]0;t\x07", "\\u001b[2J\\u001b]0;t\\u0007"),
        ("a\nb\r\tc\x7f\x85\x9b", "a\\u000ab\\u000d\\u0009c\\u007f\\u0085\\u009b"),
        ("\u202eabc\u202c\u2066\u2069\u200f\u061c", "\\u202eabc\\u202c\\u2066\\u2069\\u200f\\u061c"),
        ("\u200b\u00ad\u2060\ufeff\u2028\u2029", "\\u200b\\u00ad\\u2060\\ufeff\\u2028\\u2029"),
        ("\ud800\U000e0041\U000f0000", "\\ud800\\U000e0041\\U000f0000"),
        ("C:\\u202e", "C:\\\\u202e"),  # a literal backslash is doubled, so it cannot fake an escape
        ("ガ", "ガ"),  # NFC: カ + U+3099 composes
        ("tiếng Việt", "tiếng Việt"),  # up to 3 marks on a character stay
        ("a" + "\u0301\u0300" * 20 + "b", "á\u0300\u0301\u0300[+36]b"),  # a stack is cut and counted
        ("\u0301" * 5, "\u0301" * 3 + "[+2]"),
    ],
)
def test_visible(text: str, shown: str) -> None:
    from mynabox.gateway.text import visible

    assert visible(text) == shown


def test_quarantine_listing_neutralises_the_topic(kit: DeliveryKit, core: ReceiverCore) -> None:
    from mynabox.gateway.formatting import format_quarantined

    core.handle("mynabox/\x1b]0;x\x07/summary", seal(kit), now=NOW)
    (entry,) = core._seen.quarantined()  # type: ignore[attr-defined]
    line = format_quarantined(entry)
    assert "\x1b" not in line and "mynabox/\\u001b]0;x\\u0007/summary  topic" in line
