"""The words the whole box shares: what the crew chose, how a read ended, what the audit log records.

Pure values, no I/O: the core decides in them, the payload writes them into audit records, the adapters
and the gateway read them back. Their string values are on the wire and on disk, so they never change.
"""

from __future__ import annotations

import enum


class ConsentMode(enum.StrEnum):
    ORAL_CONSENT = "oral-consent"  # 同意あり
    LIFE_SAVING_EXCEPTION = "life-saving-exception"  # 同意取得困難 (生命・身体の保護のための例外)
    NONE = "none"  # no consent chosen (e.g. the card was not a My Number Card)


class Outcome(enum.StrEnum):
    """How one card read ended, as the audit record says it."""

    DELIVERED_SUMMARY = "delivered-summary"
    CARD_RECORD = "card-record"  # lookup failed: the sealed card record went out instead
    NOT_MY_NUMBER_CARD = "not-my-number-card"
    CARD_REMOVED = "card-removed"
    CARD_UNRESPONSIVE = "card-unresponsive"
    READ_FAILED = "read-failed"
    NOT_REGISTERED = "not-registered"  # not registered as マイナ保険証
    NO_CONSENT = "no-consent"  # the crew chose neither 同意 nor 緊急 in time: no lookup was made
    BUSY = "busy"  # a card read while another read's lookup ran: not looked up (the crew taps again)
    PURGED = "purged"  # an outbox message passed its retention limit undelivered


class ReadFailure(enum.Enum):
    """Why reading a card failed (the card worker's report to the core)."""

    NOT_MY_NUMBER_CARD = "not-my-number-card"
    REMOVED = "card-removed"
    UNRESPONSIVE = "card-unresponsive"
    MALFORMED = "read-failed"
    READER_ERROR = "reader-error"


class Part(enum.StrEnum):
    """A part of the box that may fail without stopping it (the retained state lists the failed ones)."""

    DISPLAY = "display"  # the OLED
    BUTTONS = "buttons"  # 同意 / 緊急
    LED = "led"
    BUZZER = "buzzer"
