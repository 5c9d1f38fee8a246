"""An opened message as the hospital and the crew read it: one self-contained HTML page.

The layout follows the 救急用サマリー sample form (帳票レイアウト): the critical flags first,
allergies when the section exists, then patient basics, 受診歴, 電子処方箋 (dispensing), 薬剤, 手術, 診療,
透析 and 健診. A card record (no summary) says what the hospital should do next. Pages carry no external
asset (no font, script or image from anywhere), read on a tablet and print on A4.

Everything in a page comes from a device: each string goes through ``gateway.text.html_text`` (control,
format and bidi characters shown as ``\\u`` escapes, as on the operator's terminal, then HTML-escaped), so no
text can reorder or hide what is around it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone

from mynabox.gateway.formatting import shown_flags
from mynabox.gateway.text import html_text as text
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.record import record
from mynabox.summary.flags import Flag
from mynabox.summary.model import AllergyCategory, DialysisKind, Summary, SummaryFormatError
from mynabox.vocab import ConsentMode

JST = timezone(timedelta(hours=9), "JST")

_SEX = {1: "男", 2: "女", 9: "不明"}
_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")  # the ids the page server routes (pages.py)
_CONSENT = {
    ConsentMode.ORAL_CONSENT: "同意あり",
    ConsentMode.LIFE_SAVING_EXCEPTION: "同意取得困難（生命・身体保護のための例外）",
    ConsentMode.NONE: "同意なし",
}
_CARD_REASON = {
    "not-registered": "マイナ保険証として登録されていません",
    "lookup-unavailable": "救急車内での照会ができませんでした（通信・サービス障害）",
    "summary-too-large": "サマリーが大きすぎて救急車から送れませんでした",
}
_CERT = {
    "ok": "有効（J-LIS 認証局で確認）",
    "expired": "有効期限切れ",
    "not-yet-valid": "有効期間前",
    "untrusted": "認証局を確認できません",
    "malformed": "形式不正",
}
_DIALYSIS = {DialysisKind.HEMODIALYSIS: "血液透析", DialysisKind.PERITONEAL: "腹膜透析"}
_ALLERGY = {AllergyCategory.DRUG: "薬剤", AllergyCategory.FOOD: "食物", AllergyCategory.OTHER: "その他"}

# Device text may be anything the schema allows (200-character words, stacks of combining marks): it wraps
# anywhere, and every box holding it clips what it draws (overflow, paint containment), so no text can widen
# the page past a tablet's screen or paint over the flags.
_CSS = """
*{box-sizing:border-box}
body{margin:0;padding:12px;font-family:"IPAexGothic","IPAGothic","Noto Sans CJK JP",sans-serif;
font-size:18px;line-height:1.45;color:#000;background:#fff;overflow-wrap:anywhere}
header{border-bottom:3px solid #000;margin-bottom:8px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:14px 0 4px;border-left:6px solid #333;padding-left:6px}
.meta{font-size:15px;color:#333}
.meta,.flag,.todo,td,th{overflow:hidden;contain:paint}
.flags{border:4px solid #c00;padding:6px 10px;margin:8px 0}
.flags h2{border:none;padding:0;margin:0 0 4px;color:#c00}
.flag{margin:4px 0}
.flag b{display:inline-block;min-width:6em;font-size:22px;color:#c00}
.none{color:#444}
.todo{border:4px solid #000;padding:8px 12px;margin:10px 0;font-size:20px}
table{border-collapse:collapse;width:100%;font-size:16px}
th,td{border:1px solid #666;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee;white-space:nowrap}
td.d{white-space:nowrap}
.ctl{color:#c00;font-family:monospace}
@page{size:A4;margin:12mm}
@media print{body{padding:0;font-size:11pt}h1{font-size:18pt}h2{font-size:13pt}table{font-size:10pt}
.flag b{font-size:13pt}tr{break-inside:avoid}section{break-inside:auto}}
"""


@record
class Section:
    """One block of the form: a title, column headings and rows (already HTML)."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    counted: bool = True  # a list of records (its title says how many), not a fixed set of fields
    keyed: bool = True  # the first column is ours (a date or a label), kept on one line; else device text

    def html(self) -> str:
        if not self.rows:
            return f'<section id="{self.key}"><h2>{self.title}</h2><p class="none">記録なし</p></section>'
        head = "".join(f"<th>{c}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="d">{cell}</td>' if i == 0 and self.keyed else f"<td>{cell}</td>"
                for i, cell in enumerate(r)
            )
            + "</tr>"
            for r in self.rows
        )
        count = f"（{len(self.rows)}件）" if self.counted else ""
        return (
            f'<section id="{self.key}"><h2>{self.title}{count}</h2>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
        )


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _jst(value: object) -> str:
    """An ISO time from the device in JST, or the value as it came (escaped) when it is not one."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
        if when is not None and when.tzinfo is not None:
            return when.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError):  # not a time, or one JST cannot hold (year 1 at +14:00)
        pass
    return text(value if value is not None else "不明")


def _sent(opened: Opened) -> str:
    when = opened.created_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    return when + ("" if opened.clock_synced else "（端末時刻未同期）")


def _document(title: str, body: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>" + "".join(body) + "</body></html>"
    )


def _flags_block(flags: Sequence[Flag]) -> str:
    if not flags:
        return '<div class="flags" id="flags"><h2>重要な注意事項</h2><p class="none">該当なし</p></div>'
    items = "".join(
        f'<div class="flag" data-flag="{f.code.value}"><b>{text(f.label)}</b> '
        + "、".join(text(e) for e in f.evidence)
        + "</div>"
        for f in flags
    )
    return f'<div class="flags" id="flags"><h2>重要な注意事項</h2>{items}</div>'


def summary_sections(summary: Summary) -> list[Section]:
    """The form's sections in its order (allergies only when the service had the section)."""
    p = summary.patient
    sections = []
    if summary.allergies is not None:
        rows = [
            (text(a.substance), _ALLERGY[a.category], text(a.reaction or ""))
            for a in summary.allergies.allergies
        ]
        rows += [(text(c.drug_name), "禁忌", text(c.reason)) for c in summary.allergies.contraindications]
        sections.append(
            Section(
                "allergies",
                "アレルギー・禁忌",
                ("物質・薬剤", "分類", "症状・理由"),
                tuple(rows),
                keyed=False,
            )
        )
    patient_rows = (
        ("氏名", f"{text(p.name)}（{text(p.kana)}）"),
        ("生年月日", f"{p.birth_date.isoformat()}（{_age(p.birth_date, summary.as_of)}歳）"),
        ("性別", _SEX.get(int(p.sex), "不明")),
        ("保険者番号", text(p.insurer_number)),
    )
    sections.append(Section("patient", "患者基本情報", ("項目", "内容"), patient_rows, counted=False))
    sections.append(
        Section(
            "visits",
            "受診歴（3か月）",
            ("受診日", "医療機関", "診療科", "区分"),
            tuple(
                (v.date.isoformat(), text(v.facility), text(v.department), "入院" if v.inpatient else "外来")
                for v in summary.visits
            ),
        )
    )
    sections.append(
        Section(
            "dispensings",
            "電子処方箋 調剤（45日）",
            ("調剤日", "薬剤名", "用法・用量", "日数", "薬局"),
            tuple(
                (d.date.isoformat(), text(d.drug_name), text(d.dose), f"{d.days}日", text(d.pharmacy))
                for d in summary.dispensings
            ),
        )
    )
    sections.append(
        Section(
            "medications",
            "薬剤（3か月）",
            ("処方日", "薬剤名", "用法・用量", "日数", "処方医療機関", "薬局"),
            tuple(
                (
                    m.date.isoformat(),
                    text(m.drug_name),
                    text(m.dose),
                    f"{m.days}日",
                    text(m.prescriber),
                    text(m.pharmacy or ""),
                )
                for m in summary.medications
            ),
        )
    )
    sections.append(
        Section(
            "surgeries",
            "手術（5年）",
            ("実施日", "術式", "医療機関"),
            tuple((s.date.isoformat(), text(s.procedure), text(s.facility)) for s in summary.surgeries),
        )
    )
    sections.append(
        Section(
            "treatments",
            "診療（3か月）",
            ("実施日", "内容", "医療機関"),
            tuple((t.date.isoformat(), text(t.description), text(t.facility)) for t in summary.treatments),
        )
    )
    sections.append(
        Section(
            "dialyses",
            "透析（3か月）",
            ("実施日", "種類", "医療機関"),
            tuple((d.date.isoformat(), _DIALYSIS[d.kind], text(d.facility)) for d in summary.dialyses),
        )
    )
    checkup = summary.last_checkup.isoformat() if summary.last_checkup else "記録なし"
    sections.append(
        Section("checkup", "特定健診", ("項目", "内容"), (("最終受診日", checkup),), counted=False)
    )
    return sections


def _consent_label(consent: object) -> str:
    if not isinstance(consent, str):
        return "不明"
    return _CONSENT[ConsentMode(consent)] if consent in _CONSENT else consent


def _read_rows(read: object) -> list[tuple[str, str]]:
    """The read's metadata (card hash, consent, certificate check): all device-supplied, all escaped."""
    if not isinstance(read, Mapping):
        return []
    consent = read.get("consent")
    check = read.get("certificate_check")
    status = check.get("status") if isinstance(check, Mapping) else None
    rows = [
        ("同意", text(_consent_label(consent))),
        ("読取日時", _jst(read.get("read_at"))),
        ("カード識別子", text(read.get("card_hash", "不明"))),
    ]
    if status is not None:
        rows.append(("証明書の確認", text(_CERT.get(status, status) if isinstance(status, str) else status)))
    return rows


def _table(key: str, title: str, rows: Sequence[tuple[str, str]]) -> str:
    return Section(key, title, ("項目", "内容"), tuple(rows), counted=False).html() if rows else ""


def render_page(opened: Opened) -> str:
    """The page for one opened summary or card record (the caller does not pass audit messages)."""
    head = (
        f'<p class="meta">送信元 {text(opened.device_id)} ・ 送信 {_sent(opened)} ・ 受付番号 '
        f"{text(opened.message_id)} ・ 通番 {opened.seq}</p>"
    )
    doc = opened.body.get("summary") if opened.kind == Kind.SUMMARY else None
    summary: Summary | None = None
    if doc is not None:
        try:
            summary = Summary.from_json(doc)
        except SummaryFormatError:
            summary = None
    read = _read_rows(opened.body.get("read"))
    if summary is not None:
        flags = shown_flags(opened.body, summary)  # what the crew saw, from the message
        title = f"救急用サマリー（{summary.as_of.isoformat()} 時点）"
        parts = [f"<header><h1>{title}</h1>{head}</header>", _flags_block(flags)]
        parts += [s.html() for s in summary_sections(summary)]
        parts.append(_table("read", "読取情報", read))
        if _MESSAGE_ID.fullmatch(opened.message_id):  # the page server's FHIR route beside this page
            parts.append(
                f'<p class="meta"><a href="{opened.message_id}.fhir.json" download>'
                "FHIR R4 Bundle（病院システム取り込み用）</a></p>"
            )
        return _document(f"救急用サマリー {text(summary.patient.name)}", parts)
    return _document("カード記録", _card_record_parts(opened, head, read, unreadable=doc is not None))


def _card_record_parts(
    opened: Opened, head: str, read: Sequence[tuple[str, str]], *, unreadable: bool
) -> list[str]:
    record = opened.body.get("card_record")
    reason = record.get("reason") if isinstance(record, Mapping) else None
    has_cert = isinstance(record, Mapping) and isinstance(record.get("certificate"), str)
    if unreadable:
        why = "サマリーの形式を読み取れませんでした"
    elif isinstance(reason, str):
        why = text(_CARD_REASON.get(reason, reason))
    else:
        why = "理由の記載なし"
    todo = (
        "病院側でこのカード記録の利用者証明用電子証明書を用いて、オンライン資格確認（救急時医療情報閲覧）で"
        "照会を再実行してください。"
        if has_cert
        else "証明書が含まれていません。患者のマイナンバーカードを病院の端末で読み取って照会してください。"
    )
    if reason == "not-registered":
        todo = "マイナ保険証の登録がないため救急用サマリーはありません。本人・家族から聴取してください。"
    return [
        f"<header><h1>カード記録（救急用サマリーなし）</h1>{head}</header>",
        f'<div class="todo" id="todo"><b>理由:</b> {why}<br><b>病院での対応:</b> {todo}</div>',
        _table("read", "読取情報", read),
    ]


@record
class IndexEntry:
    """One row of the list (what came in the retention window)."""

    message_id: str
    device_id: str
    received_at: datetime
    title: str  # already HTML
    flags: tuple[str, ...]  # labels


def entry_for(opened: Opened, received_at: datetime) -> IndexEntry:
    doc = opened.body.get("summary") if opened.kind == Kind.SUMMARY else None
    try:
        summary = Summary.from_json(doc) if doc is not None else None
    except SummaryFormatError:
        summary = None
    if summary is None:
        return IndexEntry(opened.message_id, opened.device_id, received_at, "カード記録", ())
    flags = tuple(f.label for f in shown_flags(opened.body, summary))
    p = summary.patient
    title = f"{text(p.name)}（{_age(p.birth_date, summary.as_of)}歳・{_SEX.get(int(p.sex), '不明')}）"
    return IndexEntry(opened.message_id, opened.device_id, received_at, title, flags)


def render_index(entries: Sequence[IndexEntry], *, hours: float) -> str:
    """The list of what was received in the last ``hours`` (a window, not a calendar day: a transport
    crosses midnight)."""
    window = f"直近{hours:g}時間"
    rows = "".join(
        f'<tr><td class="d">{e.received_at.astimezone(JST).strftime("%m-%d %H:%M:%S")}</td>'
        f"<td>{text(e.device_id)}</td>"
        f'<td><a href="m/{text(e.message_id)}">{e.title}</a></td>'
        f"<td>{'、'.join(text(f) for f in e.flags) or '―'}</td></tr>"
        for e in sorted(entries, key=lambda e: e.received_at, reverse=True)
    )
    table = (
        "<table><thead><tr><th>受信</th><th>救急車</th><th>患者</th><th>注意事項</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if entries
        else f'<p class="none">{window}の受信はありません</p>'
    )
    return _document(
        "救急用サマリー 受信一覧",
        [f"<header><h1>救急用サマリー 受信一覧（{window}）</h1></header>", table],
    )
