"""What the OLED shows, as data: the renderer turns a Screen into pixels.

No patient name or any summary text ever appears: the crew identifies the patient by the photo printed on
the card, and the OLED shows only critical flags and delivery status. Every failure screen says what to do.
"""

from __future__ import annotations

import enum

from mynabox.record import record
from mynabox.vocab import ConsentMode, Part


class ScreenKind(enum.Enum):
    READY = "ready"
    READY_CONSENTED = "ready-consented"  # a consent press waits for the tap
    READING = "reading"
    CONSENT = "consent"
    LOOKING_UP = "looking-up"
    RESULT = "result"
    NOT_REGISTERED = "not-registered"
    UNAVAILABLE = "unavailable"
    HOLD_AGAIN = "hold-again"
    CARD_UNRESPONSIVE = (
        "card-unresponsive"  # it answered its ATR, then nothing: it must leave the field first
    )
    NOT_MY_NUMBER_CARD = "not-my-number-card"
    READ_ERROR = "read-error"
    NO_CONSENT = "no-consent"
    OTHER_CARD = "other-card"
    READER_MISSING = "reader-missing"
    NO_BUTTONS = "no-buttons"  # the buttons failed and no default consent is configured: no lookup
    STOPPED = "stopped"


@record
class Status:
    """The always-visible status line: failed parts, link, queue, clock."""

    broker_online: bool = True
    queued: int = 0
    clock_synced: bool = True
    failed: tuple[Part, ...] = ()

    def text(self) -> str:
        # A failed part first, so the ellipsis never hides it; the display cannot speak of itself.
        broken = [_PART_WORDS[p] for p in self.failed if p is not Part.DISPLAY]
        parts = ["・".join(broken) + "故障"] if broken else []
        parts.append("送信可" if self.broker_online else "回線断")
        if self.queued:
            parts.append(f"未送信{self.queued}件")
        if not self.clock_synced:
            parts.append("時刻未同期")
        return " ".join(parts)


_PART_WORDS = {Part.DISPLAY: "表示", Part.BUTTONS: "ボタン", Part.LED: "LED", Part.BUZZER: "ブザー"}


@record
class Screen:
    kind: ScreenKind
    header: str  # small line at the top
    lines: tuple[str, ...]  # large lines: the instruction, or the flags
    status: Status
    inverted: bool = False  # errors are drawn white-on-black so they stand out
    small: bool = False  # body in the 8 px font (more than three flags)


BIG_LINES = 3  # 16 px lines that fit between the header and the status line
SMALL_LINES = 6


def ready(status: Status) -> Screen:
    return Screen(ScreenKind.READY, "マイナ救急", ("カードを", "かざしてください"), status)


_PRESSED = {ConsentMode.ORAL_CONSENT: "同意あり選択済", ConsentMode.LIFE_SAVING_EXCEPTION: "同意困難選択済"}


def ready_consented(mode: ConsentMode, status: Status) -> Screen:
    """Ready, with the press the next read will record (the consent prompt's words for the buttons)."""
    lines = (_PRESSED[mode], "カードを", "かざしてください")
    return Screen(ScreenKind.READY_CONSENTED, "マイナ救急", lines, status)


def reading(status: Status) -> Screen:
    return Screen(ScreenKind.READING, "読取中", ("カードを離さ", "ないでください"), status)


def consent(status: Status) -> Screen:
    return Screen(ScreenKind.CONSENT, "同意の確認", ("左:同意あり", "右:同意困難"), status)


def looking_up(status: Status) -> Screen:
    return Screen(ScreenKind.LOOKING_UP, "照会中", ("お待ち", "ください"), status)


def result(labels: tuple[str, ...], status: Status) -> Screen:
    header = "照会結果 送信済" if status.queued == 0 else "照会結果 送信待ち"
    if not labels:
        return Screen(ScreenKind.RESULT, header, ("重要フラグ", "なし"), status)
    if len(labels) <= BIG_LINES:
        return Screen(ScreenKind.RESULT, header, labels, status)
    return Screen(ScreenKind.RESULT, header, labels[:SMALL_LINES], status, small=True)


def not_registered(status: Status) -> Screen:
    return Screen(ScreenKind.NOT_REGISTERED, "保険証登録なし", ("マイナ保険証の", "登録がありません"), status)


def unavailable(status: Status) -> Screen:
    return Screen(ScreenKind.UNAVAILABLE, "照会できません", ("病院で再照会", "してください"), status, True)


def hold_again(status: Status) -> Screen:
    return Screen(ScreenKind.HOLD_AGAIN, "読取失敗", ("もう一度", "かざしてください"), status, True)


def card_unresponsive(status: Status) -> Screen:
    # The reader is held by the silent card until it leaves the field: "hold again" alone would not do.
    return Screen(
        ScreenKind.CARD_UNRESPONSIVE, "応答なし", ("カードを離して", "もう一度かざして"), status, True
    )


def not_my_number_card(status: Status) -> Screen:
    return Screen(
        ScreenKind.NOT_MY_NUMBER_CARD, "読取不可", ("マイナンバー", "カードでは", "ありません"), status, True
    )


def read_error(status: Status) -> Screen:
    return Screen(ScreenKind.READ_ERROR, "カード異常", ("もう一度", "かざしてください"), status, True)


def no_consent(status: Status) -> Screen:
    return Screen(ScreenKind.NO_CONSENT, "同意未選択", ("照会しません", "再度かざして"), status, True)


def other_card(status: Status) -> Screen:
    """Another card came while a lookup ran: that lookup's flags must not be read as the new card's."""
    lines = ("前の照会は送信", "新しいカードを", "もう一度かざして")
    return Screen(ScreenKind.OTHER_CARD, "別のカード", lines, status, True)


def reader_missing(status: Status) -> Screen:
    return Screen(
        ScreenKind.READER_MISSING, "リーダー未接続", ("リーダーを", "確認してください"), status, True
    )


def no_buttons(status: Status) -> Screen:
    """A read that needs a press while the buttons do not work (and no default consent is set)."""
    return Screen(ScreenKind.NO_BUTTONS, "ボタン故障", ("照会しません", "ボタンを確認"), status, True)


def stopped(status: Status) -> Screen:
    return Screen(ScreenKind.STOPPED, "マイナ救急", ("停止中",), status)
