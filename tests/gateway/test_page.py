"""The page's content, read from its HTML without a browser (the browser tests render the same pages)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from mynabox.gateway.page import entry_for, render_index, render_page, summary_sections, text
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.summary.flags import derive_flags
from mynabox_testkit.patients import PATIENTS, patient, summary_for

from .conftest import DAY, FORM_ORDER, NOW, body_for, seal_and_open


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name in ("src", "href") and value:
                self.urls.append(value)


def _parse(html: str) -> _Ids:
    parser = _Ids()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("key", [p.key for p in PATIENTS if p.registered])
def test_sections_in_the_forms_order_flags_first(key: str, opened_by_patient: dict[str, Opened]) -> None:
    parsed = _parse(render_page(opened_by_patient[key]))
    ids = [i for i in parsed.ids if i in {*FORM_ORDER, "flags", "allergies"}]
    expected = ["flags"] + (["allergies"] if summary_for(patient(key), DAY).allergies is not None else [])
    assert ids == expected + FORM_ORDER


@pytest.mark.parametrize("key", [p.key for p in PATIENTS if p.registered])
def test_every_record_is_listed(key: str, opened_by_patient: dict[str, Opened]) -> None:
    html = render_page(opened_by_patient[key])
    summary = summary_for(patient(key), DAY)
    assert summary is not None
    for m in summary.medications:
        assert text(m.drug_name) in html
    assert html.count("<tr>") >= sum(len(s.rows) + 1 for s in summary_sections(summary) if s.rows)
    for flag in derive_flags(summary, today=DAY):
        assert f'data-flag="{flag.code.value}"' in html


def test_no_external_assets_and_no_script(opened_by_patient: dict[str, Opened]) -> None:
    for opened in opened_by_patient.values():
        parsed = _parse(render_page(opened))
        assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
        # One link only on a summary's page: its own FHIR export, relative, beside it on the same server.
        summary = opened.kind == Kind.SUMMARY and "summary" in opened.body
        own = [f"{opened.message_id}.fhir.json"] if summary else []
        assert parsed.urls in ([], own), parsed.urls
        assert not re.search(r"url\(|@import|https?:", render_page(opened))


def test_card_record_says_what_the_hospital_should_do() -> None:
    body = {
        "card_record": {"certificate": "AAAA", "reason": "lookup-unavailable"},
        "read": {"consent": "none"},
    }
    html = render_page(seal_and_open(Kind.CARD_RECORD, body))
    assert 'id="todo"' in html and "照会を再実行" in html and "通信" in html
    assert "照会を再実行" not in render_page(seal_and_open(*body_for(patient("not-registered"))))


HOSTILE = [
    "<script>alert(1)</script>",
    "\u202eABC",
    "a\u200bb",
    "\x1b]0;title\x07",
    "x\u2028y",
    '"><img src=x>',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_device_text_is_escaped_and_made_visible(value: str) -> None:
    summary = summary_for(patient("warfarin-elderly"), DAY)
    assert summary is not None
    doc = summary.to_json()
    doc["medications"][0]["drug_name"] = value
    doc["patient"]["name"] = value
    body = {"summary": doc, "read": {"consent": value, "card_hash": value}}
    for kind, b in (
        (Kind.SUMMARY, body),
        (Kind.CARD_RECORD, {"card_record": {"reason": value}, "read": body["read"]}),
    ):
        opened = seal_and_open(kind, b)
        for html in (render_page(opened), render_index([entry_for(opened, NOW)], hours=24)):
            parsed = _parse(html)
            assert "script" not in parsed.tags and "img" not in parsed.tags
            assert not any((ord(c) < 0x20 and c not in "\n") or c in "\u202e\u200b\u2028" for c in html)


def test_a_malformed_summary_is_shown_as_unreadable_not_an_error() -> None:
    html = render_page(seal_and_open(Kind.SUMMARY, {"summary": {"schema_version": 99}, "read": "x"}))
    assert "形式を読み取れません" in html


def test_index_lists_newest_first_with_flags(opened_by_patient: dict[str, Opened]) -> None:
    from datetime import timedelta

    entries = [entry_for(o, NOW + timedelta(minutes=i)) for i, o in enumerate(opened_by_patient.values())]
    html = render_index(entries, hours=24)
    links = re.findall(r'href="m/([0-9a-f]{32})"', html)
    assert links == [e.message_id for e in reversed(entries)]
    assert "抗凝固薬" in html
    assert "直近24時間の受信はありません" in render_index([], hours=24)
