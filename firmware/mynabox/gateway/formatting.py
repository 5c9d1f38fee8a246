"""The operator's view of an opened message, in Japanese (the gateway side: patient data is expected here).

Every string taken from a message is printed through ``visible``: control, format (bidi) and separator
characters appear as ``\\uXXXX``, so a box cannot drive the operator's terminal or reorder what it shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta, timezone

from mynabox.gateway.store import QuarantineEntry
from mynabox.gateway.text import visible
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.summary.flags import Flag, derive_flags, flags_from_json
from mynabox.summary.model import Summary, SummaryFormatError
from mynabox.vocab import Outcome

JST = timezone(timedelta(hours=9), "JST")
_SEX = {1: "男", 2: "女", 9: "不明"}
OUTCOME_LABELS = {  # for the operator; an unknown value is shown as it came
    Outcome.DELIVERED_SUMMARY: "サマリー送信",
    Outcome.CARD_RECORD: "カード記録送信（照会失敗）",
    Outcome.NOT_REGISTERED: "カード記録送信（マイナ保険証未登録）",
    Outcome.NO_CONSENT: "同意未選択・照会なし",
    Outcome.BUSY: "照会中の再タッチ・照会なし",
    Outcome.NOT_MY_NUMBER_CARD: "マイナンバーカード以外",
    Outcome.CARD_REMOVED: "読取中にカードが離れた",
    Outcome.CARD_UNRESPONSIVE: "カード応答なし",
    Outcome.READ_FAILED: "読取失敗",
    Outcome.PURGED: "保存期限切れで未送信のまま削除",
}


def _lines(lines: list[str]) -> str:
    return "\n".join(visible(line) for line in lines)


def format_opened(opened: Opened, *, today: date) -> str:
    """A readable Japanese rendering for the gateway's operator; every line goes through ``visible``."""
    sent = opened.created_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    clock = "" if opened.clock_synced else "（端末時刻未同期）"
    head = f"■ {opened.device_id}  {sent}{clock}  id {opened.message_id}  #{opened.seq}"
    if opened.kind == Kind.AUDIT:
        record = opened.body.get("record")
        outcome = record.get("outcome") if isinstance(record, dict) else None
        known = isinstance(outcome, str) and outcome in OUTCOME_LABELS
        label = OUTCOME_LABELS[Outcome(str(outcome))] if known else ""
        return _lines([head, f"  監査記録: {outcome}" + (f"（{label}）" if label else "")])
    summary = _summary_of(opened.body)
    rendered = None
    if summary is not None:
        try:
            rendered = format_summary(summary, today=today, body=opened.body)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
            rendered = None  # schema-valid but unrenderable: the operator still sees the message's keys
    if rendered is None:
        title = (
            "カード記録（サマリー取得不可）" if opened.kind == Kind.CARD_RECORD else "サマリー（形式不明）"
        )
        keys = ", ".join(sorted(opened.body))
        return _lines([head, f"  {title}: 項目 {keys}"])
    return visible(head) + "\n" + rendered


def _summary_of(body: Mapping[str, object]) -> Summary | None:
    doc = body.get("summary", body)
    try:
        return Summary.from_json(doc)
    except SummaryFormatError:
        return None


def shown_flags(body: Mapping[str, object], summary: Summary) -> tuple[Flag, ...]:
    """The flags the box showed the crew, as its message carries them. A message from firmware before
    ``flags`` has none, and a receiver that does not check bodies may pass malformed ones: derived here then
    (the box's date is the summary's ``as_of``), so a page never fails on them."""
    if "flags" in body:
        try:
            return flags_from_json(body["flags"])
        except ValueError:
            pass
    return derive_flags(summary, today=summary.as_of)


def format_summary(summary: Summary, *, today: date, body: Mapping[str, object] | None = None) -> str:
    p = summary.patient
    lines = [
        f"  救急用サマリー（{summary.as_of.isoformat()} 時点）",
        f"  患者: {p.name}（{p.kana}）  性別: {_SEX.get(int(p.sex), '不明')}",
        f"  生年月日: {p.birth_date.isoformat()}  保険者番号: {p.insurer_number}",
    ]
    flags = derive_flags(summary, today=today) if body is None else shown_flags(body, summary)
    if flags:
        lines.append("  ⚠ 注意: " + " / ".join(f"{f.label}（{'、'.join(f.evidence)}）" for f in flags))
    else:
        lines.append("  注意事項: なし")
    sections: list[tuple[str, list[str]]] = [
        (
            "薬剤",
            [f"{m.date} {m.drug_name} {m.dose} {m.days}日分 ({m.prescriber})" for m in summary.medications],
        ),
        (
            "調剤（電子処方箋）",
            [f"{d.date} {d.drug_name} {d.dose} {d.days}日分" for d in summary.dispensings],
        ),
        ("受診歴", [f"{v.date} {v.facility} {v.department}" for v in summary.visits]),
        ("手術", [f"{s.date} {s.procedure} ({s.facility})" for s in summary.surgeries]),
        ("診療", [f"{t.date} {t.description} ({t.facility})" for t in summary.treatments]),
        ("透析", [f"{d.date} {d.facility}" for d in summary.dialyses]),
    ]
    if summary.allergies is not None:
        sections.append(
            (
                "アレルギー・禁忌",
                [
                    a.substance + (f"（{a.reaction}）" if a.reaction else "")
                    for a in summary.allergies.allergies
                ]
                + [f"禁忌: {c.drug_name}（{c.reason}）" for c in summary.allergies.contraindications],
            )
        )
    for title, items in sections:
        lines.append(f"  {title}: " + ("なし" if not items else ""))
        lines.extend(f"    - {item}" for item in items)
    lines.append(f"  健診: {summary.last_checkup or 'なし'}")
    return _lines(lines)


def format_quarantined(entry: QuarantineEntry) -> str:
    """One line per refused message for the operator (no body: it is still sealed)."""
    when = entry.received_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    return visible(f"#{entry.id}  {when}  {entry.topic}  {entry.reason}  {entry.size} bytes")
