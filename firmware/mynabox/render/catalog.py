"""Every screen the box can show, with sample data: for `mynabox screens`, review and golden tests."""

from __future__ import annotations

from mynabox.core import screens
from mynabox.core.screens import Screen, Status
from mynabox.vocab import ConsentMode, Part

_OFFLINE = Status(broker_online=False, queued=3, clock_synced=False)


def catalog() -> dict[str, Screen]:
    ok = Status()
    return {
        "ready": screens.ready(ok),
        "ready-offline": screens.ready(_OFFLINE),
        "ready-consented": screens.ready_consented(ConsentMode.ORAL_CONSENT, ok),
        "ready-emergency": screens.ready_consented(ConsentMode.LIFE_SAVING_EXCEPTION, ok),
        "reading": screens.reading(ok),
        "consent": screens.consent(ok),
        "looking-up": screens.looking_up(ok),
        "result-none": screens.result((), ok),
        "result-flags": screens.result(("抗凝固薬", "透析", "手術歴"), ok),
        "result-many-queued": screens.result(
            ("抗凝固薬", "抗血小板薬", "インスリン", "透析", "アレルギー", "手術歴"),
            Status(broker_online=False, queued=2),
        ),
        "not-registered": screens.not_registered(ok),
        "unavailable": screens.unavailable(ok),
        "hold-again": screens.hold_again(ok),
        "card-unresponsive": screens.card_unresponsive(ok),
        "not-my-number-card": screens.not_my_number_card(ok),
        "read-error": screens.read_error(ok),
        "no-consent": screens.no_consent(ok),
        "other-card": screens.other_card(ok),
        "reader-missing": screens.reader_missing(ok),
        "no-buttons": screens.no_buttons(Status(failed=(Part.BUTTONS,))),
        "ready-parts-failed": screens.ready(Status(failed=(Part.BUTTONS, Part.BUZZER), queued=1)),
        "stopped": screens.stopped(ok),
    }
