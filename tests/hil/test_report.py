"""The bench report as the technician reads it, in Debian's headless Chromium at 1000 px: every check named
for what it proved, each measurement beside its limit in its check's row, and no sideways scrolling however
long a name, a reason, a prompt or a value is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.browser import headless_chromium  # tests/gateway (tests/ is on sys.path)
from mynabox.render.catalog import catalog

from .measure import judge
from .names import panel_check, screen_check
from .report import render_html

pytestmark = pytest.mark.stack
WIDTH = 1000
LONG = "カード読取" * 40  # no space to break at: 200 wide characters
UNBROKEN = "E" * 400
PATH = "/etc/mynabox-bench/" + "very-long-directory-name-" * 12 + "rig.toml"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chromium(WIDTH, 900) as chrome:
        yield chrome


def _report(scale: int = 1) -> dict[str, Any]:
    read = judge("card_read_ms", 420.0, "reader: card read", None).as_dict()
    slow = judge("tap_to_result_ms", 123456789.123 * scale, f"box: {LONG}", None).as_dict()
    return {
        "run": "20261207T020000Z-" + "x" * 120,
        "outcome": "fail",
        "box": {"device_id": "amb-" + "9" * 150, "serial": UNBROKEN, "config": PATH},
        "firmware": {"version": "0.9.0", "commit": "g" + "0123456789abcdef" * 10},
        "technician": "T-" + "7" * 200,
        "rig": {"file": PATH, "text": "[rig]\nname = '" + UNBROKEN + "'\n"},
        "counts": {"passed": 1, "failed": 1, "skipped": 0, "marginal": 0},
        "tests": [
            {
                "id": "x",
                "name": "reader: card read",
                "proved": "reader: card read in 0.42 s",
                "outcome": "passed",
                "reason": None,
                "duration_s": 1.5,
            },
            {
                "id": "y",
                "name": f"box: {LONG}",
                "proved": None,
                "outcome": "failed",
                "reason": UNBROKEN + " " + LONG,
                "duration_s": 99999.25,
            },
        ],
        "measurements": [read, slow],
        "operator": [
            {
                "step": f"box: {LONG}",
                "prompt": UNBROKEN * 2,
                "answer": UNBROKEN,
                "technician": "T-" + "7" * 200,
                "asked_at": "2026-12-07T02:00:00.000+00:00",
                "answered_at": None,
                "waited_s": 12345.6,
            },
        ],
        "facts": {"reader: card read": {"readers": [UNBROKEN, LONG] * 3, "SFI reads": True}},
    }


def test_a_report_with_long_names_and_values_does_not_scroll_sideways_at_1000_px(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()), encoding="utf-8")
    browser.get(page.as_uri())
    scroll, client = browser.execute_script(
        "const e = document.scrollingElement; return [e.scrollWidth, e.clientWidth]"
    )
    assert client == WIDTH and scroll <= client, f"the report is {scroll} px wide in a {client} px window"
    for cell in browser.find_elements(By.CSS_SELECTOR, "td, th"):
        assert cell.rect["x"] + cell.rect["width"] <= WIDTH + 0.5, cell.text[:80]


def test_each_check_shows_what_it_proved_and_its_measurements_beside_their_limits(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()), encoding="utf-8")
    browser.get(page.as_uri())
    rows = {
        cells[0].text: [c.text for c in cells]
        for row in browser.find_elements(By.XPATH, "//h2[.='Checks']/following-sibling::table[1]//tr")
        if (cells := row.find_elements(By.TAG_NAME, "td"))
    }
    assert rows["reader: card read in 0.42 s"][1] == "PASSED"
    assert rows["reader: card read in 0.42 s"][2] == (
        "card_read_ms 420 ms, limit ≤ 1000 ms (marginal above 600): PASS"
    )
    failed = rows[f"box: {LONG}"]
    assert failed[1] == "FAILED" and "limit ≤ 3000 ms (marginal above 2000): FAIL" in failed[2]


def test_check_names_speak_the_technicians_language() -> None:
    assert panel_check("button 同意 (consent)") == "button 同意: press seen"
    assert panel_check("button 緊急 (emergency)") == "button 緊急: press seen"
    assert panel_check("buzzer ok").startswith("buzzer 'ok': 1 beep of ")
    assert screen_check("reading") == "OLED: 読取中 screen (reading)"
    assert all(screen_check(name).startswith("OLED: ") for name in catalog())
