"""A consent press made before the tap, on the whole box: shown on the OLED, withdrawn by both buttons held.

The box runs in this process so the test can press 同意 / 緊急 on gpiozero's mock pins; pcscd with the vpcd
reader, the reference service, mosquitto with TLS and SQLite are real. What the OLED shows is read off
luma's dummy device and compared with the screen rendered on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import ImageChops

from mynabox.adapters.audit import AuditLog
from mynabox.adapters.keyfiles import load_audit_key
from mynabox.core import screens
from mynabox.core.screens import Screen, ScreenKind
from mynabox.render.draw import render
from mynabox.vocab import ConsentMode, Outcome
from mynabox_testkit.inprocess import BoxThread, Buttons, running_box
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.stack import BoxStack
from mynabox_testkit.vpcd import VpcdCardServer
from support.wait import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@dataclass
class Crew:
    box: BoxThread
    stack: BoxStack
    buttons: Buttons

    def screen(self) -> Screen:
        assert self.box.parts.controller is not None
        return self.box.parts.controller.screen

    def shows(self, kind: ScreenKind) -> bool:
        return self.screen().kind is kind

    def oled_matches_screen(self) -> bool:
        """The dummy device's last frame is the controller's screen, drawn on its own."""
        oled = self.box.parts.oled
        assert oled is not None and oled.last is not None
        drawn = render(self.screen()).convert("1")
        return ImageChops.difference(oled.last.convert("1"), drawn).getbbox() is None

    def state(self) -> str:
        assert self.box.parts.controller is not None
        return self.box.parts.controller.state.value

    def tap(self, key: str) -> VpcdCardServer:
        assert self.stack.pcscd is not None
        card = VirtualMyNumberCard(patient(key).card_id)
        return VpcdCardServer(card, port=self.stack.pcscd.vpcd_port).start()


@pytest.fixture
def crew() -> Iterator[Crew]:
    with BoxStack(device_id="amb-buttons", consent_default="none", consent_timeout_s=30) as stack:
        assert stack.pcscd is not None
        stack.pcscd.use_in_process()
        with running_box(stack) as (box, buttons):
            yield Crew(box, stack, buttons)


def audit_records(crew: Crew) -> list[tuple[Outcome, ConsentMode]]:
    cfg = crew.box.config
    log = AuditLog(cfg.storage.state_dir / "audit.jsonl", key=load_audit_key(cfg.audit.key.path))
    return [(e.record.outcome, e.record.consent) for e in log.entries()]


def test_a_press_before_the_tap_shows_and_is_recorded_for_that_read(crew: Crew) -> None:
    crew.buttons.press(crew.buttons.emergency)
    assert wait_for(lambda: crew.shows(ScreenKind.READY_CONSENTED), 5)
    assert crew.screen() == screens.ready_consented(ConsentMode.LIFE_SAVING_EXCEPTION, crew.screen().status)
    assert wait_for(crew.oled_matches_screen, 5)
    card = crew.tap("dialysis")
    try:
        assert wait_for(lambda: crew.state() == "result", 15), crew.state()  # no consent prompt
    finally:
        card.remove()
    assert wait_for(lambda: len(audit_records(crew)) == 1, 10)
    assert audit_records(crew) == [(Outcome.DELIVERED_SUMMARY, ConsentMode.LIFE_SAVING_EXCEPTION)]


def test_both_buttons_held_withdraw_the_press_and_the_box_asks_again(crew: Crew) -> None:
    crew.buttons.press(crew.buttons.consent)
    assert wait_for(lambda: crew.shows(ScreenKind.READY_CONSENTED), 5)
    crew.buttons.hold_both()
    assert wait_for(lambda: crew.shows(ScreenKind.READY), 5)
    assert wait_for(crew.oled_matches_screen, 5)
    card = crew.tap("healthy")
    try:
        assert wait_for(lambda: crew.state() == "consent", 15), crew.state()
        crew.buttons.press(crew.buttons.consent)  # now asked, and answered, for this patient
        assert wait_for(lambda: crew.state() == "result", 15), crew.state()
    finally:
        card.remove()
    assert wait_for(lambda: len(audit_records(crew)) == 1, 10)
    assert audit_records(crew) == [(Outcome.DELIVERED_SUMMARY, ConsentMode.ORAL_CONSENT)]
