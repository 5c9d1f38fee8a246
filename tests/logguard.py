"""The suite-wide guard: no synthetic patient's personal data in any log (issue 10, "Fuzzing, kept running").

Every log record of the test process (all loggers, all threads; ``mynabox.*`` at DEBUG for the session) and
every ``*.log`` file a test leaves in its ``tmp_path`` (the daemon's stderr, mosquitto's log) is searched for
what would identify a synthetic patient of ``mynabox_testkit.patients``: names and kana (with or without the
space), birth dates (ISO, compact, slashed, 年月日), insurer numbers, the drug names of their prescriptions,
allergy substances, the card's certificate (its CN and pieces of its DER in base64 and hex) and the test CA's
signature-certificate attributes. A hit fails the test that was running, naming the kind of data, not the
value. ``pcscd.log`` is left out: the harness starts pcscd with ``--apdu``, so it traces the card's bytes by
design (it is the test's instrument, not the box's log).

A test that must log such data on purpose says so with ``@pytest.mark.allow_personal_data_in_logs``.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from functools import cache
from pathlib import Path

NOT_SCANNED = frozenset({"pcscd.log"})
MAX_LOG_BYTES = 32 * 1024 * 1024


def _variants(text: str) -> set[str]:
    return {text, text.replace(" ", ""), text.replace(" ", "\u3000")}


@cache
def markers() -> dict[str, str]:
    """Marker text -> what it is (``name of warfarin-elderly``); built once, from the shipped fakes."""
    from mynabox_testkit import testca
    from mynabox_testkit.patients import PATIENTS

    found: dict[str, str] = {}

    def add(values: Iterable[str], what: str) -> None:
        for v in values:
            if len(v) >= 2:
                found.setdefault(v, what)

    for p in PATIENTS:
        add(_variants(p.name), f"name of {p.key}")
        add(_variants(p.kana), f"kana of {p.key}")
        b = p.birth_date
        add(
            [b.isoformat(), b.strftime("%Y%m%d"), b.strftime("%Y/%m/%d"), f"{b.year}年{b.month}月{b.day}日"],
            f"birth date of {p.key}",
        )
        add([p.insurer_number], f"insurer number of {p.key}")
        add([rx.drug_name for rx in p.prescriptions], f"drug of {p.key}")
        if p.allergies is not None:
            add([a.substance for a in p.allergies.allergies if len(a.substance) >= 3], f"allergy of {p.key}")
            add([c.drug_name for c in p.allergies.contraindications], f"contraindication of {p.key}")
        add([p.card_id[:22]], f"certificate CN of {p.key}")
        der = testca.auth_certificate(p.card_id)
        middle = len(der) // 2  # inside the public key: unique to the card
        add([base64.b64encode(der).decode()[middle : middle + 32]], f"certificate (base64) of {p.key}")
        add(
            [der.hex()[2 * middle : 2 * middle + 48], der.hex().upper()[2 * middle : 2 * middle + 48]],
            f"certificate (hex) of {p.key}",
        )
    add(
        ["試験　花子", "試験 花子", "東京都試験市一丁目１番", "419800217"],
        "test card signature-certificate attribute",
    )
    return found


@cache
def _pattern() -> re.Pattern[str]:
    parts = []
    for text in sorted(markers(), key=len, reverse=True):
        piece = re.escape(text)
        if text.isascii() and text.isdigit():  # numbers: not inside a longer token (a hex message id)
            piece = rf"(?<![0-9A-Za-z]){piece}(?![0-9A-Za-z])"
        parts.append(piece)
    return re.compile("|".join(parts))


def leaks(text: str) -> list[str]:
    """What kinds of personal data ``text`` holds (empty: none)."""
    return sorted({markers()[m.group(0)] for m in _pattern().finditer(text)})


class Collector(logging.Handler):
    """Keeps, per test, the log records that hold personal data (only the kinds and the logger names)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._lock_hits = threading.Lock()
        self._hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is someone else's failure
            text = str(record.msg)
        if record.exc_info and not record.exc_text:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        kinds = leaks(text)
        if kinds:
            with self._lock_hits:
                self._hits.append(f"{record.name} {record.levelname}: {', '.join(kinds)}")

    def take(self) -> list[str]:
        with self._lock_hits:
            hits, self._hits = self._hits, []
        return hits


def scan_logs(directory: Path) -> list[str]:
    hits = []
    for path in sorted(directory.rglob("*.log")):
        if path.name in NOT_SCANNED or not path.is_file():
            continue
        with path.open("rb") as f:
            text = f.read(MAX_LOG_BYTES).decode("utf-8", "replace")
        kinds = leaks(text)
        if kinds:
            hits.append(f"{path.relative_to(directory)}: {', '.join(kinds)}")
    return hits
